//! `TCB_VERSION` (SEV-SNP Firmware ABI, "TCB_VERSION Structure"): the security patch
//! levels of the firmware components, 8 bytes, laid out per product.
//!
//! | byte | Milan, Genoa | Turin |
//! |---|---|---|
//! | 0 | BOOT_LOADER | FMC |
//! | 1 | TEE | BOOT_LOADER |
//! | 2 | reserved | TEE |
//! | 3 | reserved | SNP |
//! | 4-5 | reserved | reserved |
//! | 6 | SNP | reserved |
//! | 7 | MICROCODE | MICROCODE |
//!
//! A TCB is only partially ordered: one is at least another when every component is.

use serde::{Deserialize, Serialize, Serializer};

use super::Product;

/// Component values of a TCB, independent of the byte layout. `fmc` exists on Turin
/// only and is 0 elsewhere. Usable as a policy's minimum TCB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcbParts {
    /// FMC (Turin) security patch level.
    #[serde(default)]
    pub fmc: u8,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
}

impl TcbParts {
    /// Whether every component is at least `minimum`'s.
    #[must_use]
    pub fn at_least(&self, minimum: &TcbParts) -> bool {
        self.components().iter().zip(minimum.components()).all(|((_, have), (_, need))| *have >= need)
    }

    /// Components as (name, value), in layout order.
    #[must_use]
    pub fn components(&self) -> [(&'static str, u8); 5] {
        [
            ("fmc", self.fmc),
            ("bootloader", self.bootloader),
            ("tee", self.tee),
            ("snp", self.snp),
            ("microcode", self.microcode),
        ]
    }
}

/// A `TCB_VERSION` with the product that gives its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcbVersion {
    product: Product,
    raw: [u8; 8],
}

impl TcbVersion {
    /// The TCB in `raw` (wire order: byte 0 first) for `product`'s layout.
    #[must_use]
    pub fn new(product: Product, raw: [u8; 8]) -> Self {
        Self { product, raw }
    }

    /// Encodes `parts` in `product`'s layout (reserved bytes zero; `fmc` is dropped
    /// outside Turin).
    #[must_use]
    pub fn from_parts(product: Product, parts: TcbParts) -> Self {
        let TcbParts { fmc, bootloader, tee, snp, microcode } = parts;
        let raw = match product {
            Product::Milan | Product::Genoa => [bootloader, tee, 0, 0, 0, 0, snp, microcode],
            Product::Turin => [fmc, bootloader, tee, snp, 0, 0, 0, microcode],
        };
        Self { product, raw }
    }

    /// The product whose layout applies.
    #[must_use]
    pub fn product(&self) -> Product {
        self.product
    }

    /// The 8 bytes as received.
    #[must_use]
    pub fn raw(&self) -> [u8; 8] {
        self.raw
    }

    /// The little-endian `u64` the ABI describes.
    #[must_use]
    pub fn as_u64(&self) -> u64 {
        u64::from_le_bytes(self.raw)
    }

    /// The component values.
    #[must_use]
    pub fn parts(&self) -> TcbParts {
        let [b0, b1, b2, b3, _, _, b6, b7] = self.raw;
        match self.product {
            Product::Milan | Product::Genoa => {
                TcbParts { fmc: 0, bootloader: b0, tee: b1, snp: b6, microcode: b7 }
            }
            Product::Turin => TcbParts { fmc: b0, bootloader: b1, tee: b2, snp: b3, microcode: b7 },
        }
    }

    /// Whether the bytes the layout reserves are zero.
    #[must_use]
    pub fn reserved_bytes_are_zero(&self) -> bool {
        Self::from_parts(self.product, self.parts()).raw == self.raw
    }

    /// Whether every component is at least `minimum`'s.
    #[must_use]
    pub fn at_least(&self, minimum: &TcbParts) -> bool {
        self.parts().at_least(minimum)
    }
}

impl PartialOrd for TcbVersion {
    /// Component-wise: `None` for different products or when components disagree.
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        if self.product != other.product {
            return None;
        }
        let (a, b) = (self.parts(), other.parts());
        match (a.at_least(&b), b.at_least(&a)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        }
    }
}

impl Serialize for TcbVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Decoded {
            raw: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            fmc: Option<u8>,
            bootloader: u8,
            tee: u8,
            snp: u8,
            microcode: u8,
        }
        let p = self.parts();
        Decoded {
            raw: hex::encode(self.raw),
            fmc: (self.product == Product::Turin).then_some(p.fmc),
            bootloader: p.bootloader,
            tee: p.tee,
            snp: p.snp,
            microcode: p.microcode,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(hex_str: &str) -> [u8; 8] {
        hex::decode(hex_str).unwrap().try_into().unwrap()
    }

    #[test]
    fn layouts() {
        let milan = TcbVersion::new(Product::Milan, raw("0300000000000873"));
        assert_eq!(milan.parts(), TcbParts { fmc: 0, bootloader: 3, tee: 0, snp: 8, microcode: 115 });
        let turin = TcbVersion::new(Product::Turin, raw("0001000200000047"));
        assert_eq!(turin.parts(), TcbParts { fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 0x47 });
        assert_eq!(TcbVersion::from_parts(Product::Turin, turin.parts()), turin);
        assert!(milan.reserved_bytes_are_zero());
        assert!(!TcbVersion::new(Product::Milan, raw("0300000100000873")).reserved_bytes_are_zero());
        let json = serde_json::to_value(turin).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"raw": "0001000200000047", "fmc": 0, "bootloader": 1, "tee": 0, "snp": 2, "microcode": 71})
        );
        assert!(serde_json::to_value(milan).unwrap().get("fmc").is_none());
    }

    #[test]
    fn partial_order_per_component() {
        let base = TcbParts { fmc: 0, bootloader: 4, tee: 0, snp: 24, microcode: 219 };
        let a = TcbVersion::from_parts(Product::Milan, base);
        let newer_ucode = TcbVersion::from_parts(Product::Milan, TcbParts { microcode: 220, ..base });
        let older_snp = TcbVersion::from_parts(Product::Milan, TcbParts { snp: 23, microcode: 220, ..base });
        assert!(newer_ucode > a);
        assert_eq!(a.partial_cmp(&older_snp), None, "snp lower but microcode higher");
        assert!(a.at_least(&base) && !a.at_least(&TcbParts { tee: 1, ..base }));
        assert_eq!(a.partial_cmp(&TcbVersion::from_parts(Product::Genoa, base)), None);
    }
}
