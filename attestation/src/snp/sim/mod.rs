//! A test-only SEV-SNP signer (feature `sim`): its own ARK → ASK → VCEK and
//! ARK → ASVK → VLEK chains (RSA-2048 CAs signing with RSA-PSS/SHA-384 as AMD's do,
//! ECDSA P-384 leaves with the AMD extensions), and reports with chosen fields signed
//! like the firmware signs them. Broker and client tests use it to exercise the SNP path
//! without hardware; [`hcl`] wraps its reports into the HCL reports an Azure confidential
//! VM's paravisor writes into the vTPM.
//!
//! Nothing here is trusted by default: a verifier accepts these reports only when built
//! with [`super::SnpVerifierBuilder::trust_test_root`], and its claims then say
//! `root: "test"`. The certificate names say "Mooring test", never AMD's.

mod chain;
pub mod hcl;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};

use super::cert_table::{CertTable, CertTableKind};
use super::report::{P384_SCALAR_LEN, REPORT_LEN, SIGNATURE_COMPONENT_LEN, SIGNED_LEN};
use super::tcb::{TcbParts, TcbVersion};
use super::{Product, SigningKey};
use chain::Ca;

/// notBefore of every certificate the signer issues by default (2020-01-01T00:00:00Z).
pub const DEFAULT_NOT_BEFORE: i64 = 1_577_836_800;
/// notAfter of every certificate the signer issues by default (2049-12-31T23:59:59Z).
pub const DEFAULT_NOT_AFTER: i64 = 2_524_607_999;

/// Everything a VCEK or VLEK certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// hwID extension bytes (VCEK); `None` leaves the extension out.
    pub hw_id: Option<Vec<u8>>,
    /// The SPL extensions.
    pub tcb: TcbParts,
    /// productName extension.
    pub product_name: String,
    /// cspId extension (VLEK).
    pub csp_id: Option<String>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Serial number.
    pub serial: u64,
}

/// Every field of an `ATTESTATION_REPORT` before signing, each settable to any value
/// (reserved bytes are written as zero; poke the bytes and use [`TestSigner::resign`]
/// to test those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFields {
    /// `VERSION`.
    pub version: u32,
    /// `GUEST_SVN`.
    pub guest_svn: u32,
    /// `POLICY`.
    pub policy: u64,
    /// `FAMILY_ID`.
    pub family_id: [u8; 16],
    /// `IMAGE_ID`.
    pub image_id: [u8; 16],
    /// `VMPL`.
    pub vmpl: u32,
    /// `SIGNATURE_ALGO`.
    pub signature_algo: u32,
    /// `CURRENT_TCB`.
    pub current_tcb: [u8; 8],
    /// `PLATFORM_INFO`.
    pub platform_info: u64,
    /// `AUTHOR_KEY_EN`.
    pub author_key_en: bool,
    /// `MASK_CHIP_KEY`.
    pub mask_chip_key: bool,
    /// `SIGNING_KEY` raw value (0 VCEK, 1 VLEK, 7 none); also picks the key that signs.
    pub signing_key: u8,
    /// `REPORT_DATA`.
    pub report_data: [u8; 64],
    /// `MEASUREMENT`.
    pub measurement: [u8; 48],
    /// `HOST_DATA`.
    pub host_data: [u8; 32],
    /// `ID_KEY_DIGEST`.
    pub id_key_digest: [u8; 48],
    /// `AUTHOR_KEY_DIGEST`.
    pub author_key_digest: [u8; 48],
    /// `REPORT_ID`.
    pub report_id: [u8; 32],
    /// `REPORT_ID_MA`.
    pub report_id_ma: [u8; 32],
    /// `REPORTED_TCB`.
    pub reported_tcb: [u8; 8],
    /// `CPUID_FAM_ID`, `CPUID_MOD_ID`, `CPUID_STEP` (written for version 3 and later).
    pub cpuid: [u8; 3],
    /// `CHIP_ID`.
    pub chip_id: [u8; 64],
    /// `COMMITTED_TCB`.
    pub committed_tcb: [u8; 8],
    /// `CURRENT_MAJOR`, `CURRENT_MINOR`, `CURRENT_BUILD`.
    pub current_version: [u8; 3],
    /// `COMMITTED_MAJOR`, `COMMITTED_MINOR`, `COMMITTED_BUILD`.
    pub committed_version: [u8; 3],
    /// `LAUNCH_TCB`.
    pub launch_tcb: [u8; 8],
    /// `LAUNCH_MIT_VECTOR` (written for version 5).
    pub launch_mit_vector: u64,
    /// `CURRENT_MIT_VECTOR` (written for version 5).
    pub current_mit_vector: u64,
}

impl ReportFields {
    /// The unsigned report bytes (signature field zero).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPORT_LEN);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.guest_svn.to_le_bytes());
        out.extend_from_slice(&self.policy.to_le_bytes());
        out.extend_from_slice(&self.family_id);
        out.extend_from_slice(&self.image_id);
        out.extend_from_slice(&self.vmpl.to_le_bytes());
        out.extend_from_slice(&self.signature_algo.to_le_bytes());
        out.extend_from_slice(&self.current_tcb);
        out.extend_from_slice(&self.platform_info.to_le_bytes());
        let flags = u32::from(self.author_key_en)
            | u32::from(self.mask_chip_key) << 1
            | u32::from(self.signing_key & 0b111) << 2;
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.report_data);
        out.extend_from_slice(&self.measurement);
        out.extend_from_slice(&self.host_data);
        out.extend_from_slice(&self.id_key_digest);
        out.extend_from_slice(&self.author_key_digest);
        out.extend_from_slice(&self.report_id);
        out.extend_from_slice(&self.report_id_ma);
        out.extend_from_slice(&self.reported_tcb);
        if self.version >= 3 {
            out.extend_from_slice(&self.cpuid);
        } else {
            out.extend_from_slice(&[0; 3]);
        }
        out.extend_from_slice(&[0; 0x15]);
        out.extend_from_slice(&self.chip_id);
        out.extend_from_slice(&self.committed_tcb);
        let [major, minor, build] = self.current_version;
        out.extend_from_slice(&[build, minor, major, 0]);
        let [major, minor, build] = self.committed_version;
        out.extend_from_slice(&[build, minor, major, 0]);
        out.extend_from_slice(&self.launch_tcb);
        if self.version >= 5 {
            out.extend_from_slice(&self.launch_mit_vector.to_le_bytes());
            out.extend_from_slice(&self.current_mit_vector.to_le_bytes());
        } else {
            out.extend_from_slice(&[0; 16]);
        }
        out.resize(REPORT_LEN, 0);
        out
    }
}

/// A software SEV-SNP "platform": test ARK, ASK, ASVK, a VCEK for one chip and TCB,
/// and a VLEK.
pub struct TestSigner {
    product: Product,
    ark: Ca,
    ask: Ca,
    asvk: Ca,
    vcek: EcdsaKeyPair,
    vlek: EcdsaKeyPair,
    vcek_der: Vec<u8>,
    vlek_der: Vec<u8>,
    chip_id: [u8; 64],
    tcb: TcbParts,
    rng: SystemRandom,
}

impl std::fmt::Debug for TestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSigner")
            .field("product", &self.product)
            .field("chip_id", &hex::encode(self.chip_id))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

impl TestSigner {
    /// A Milan test platform.
    ///
    /// # Panics
    /// Only if key generation fails (test support code).
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_for(Product::Milan)
    }

    /// A test platform of `product` (Turin gets an 8-byte hwID and the FMC SPL).
    ///
    /// # Panics
    /// Only if key generation fails (test support code).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn generate_for(product: Product) -> Self {
        let rng = SystemRandom::new();
        let tag = product.name();
        let ark = Ca::new(&format!("ARK-Mooring-Test-{tag}"), None, 1, &rng);
        let ask = Ca::new(&format!("SEV-Mooring-Test-{tag}"), Some(&ark), 2, &rng);
        let asvk = Ca::new(&format!("SEV-VLEK-Mooring-Test-{tag}"), Some(&ark), 3, &rng);
        let ec_key = || {
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).expect("P-384 keygen");
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).expect("P-384 key")
        };
        let mut chip_id = [0u8; 64];
        if let Some(hw_id) = chip_id.get_mut(..product.hw_id_len()) {
            aws_lc_rs::rand::fill(hw_id).expect("random chip id");
        }
        let tcb = TcbParts {
            fmc: if product == Product::Turin { 1 } else { 0 },
            bootloader: 4,
            tee: 0,
            snp: 24,
            microcode: 219,
        };
        let mut signer = Self {
            product,
            ark,
            ask,
            asvk,
            vcek: ec_key(),
            vlek: ec_key(),
            vcek_der: Vec::new(),
            vlek_der: Vec::new(),
            chip_id,
            tcb,
            rng,
        };
        signer.vcek_der = signer.issue_vcek(&signer.vcek_spec());
        signer.vlek_der = signer.issue_vlek(&signer.vlek_spec());
        signer
    }

    /// The product the chain is for.
    #[must_use]
    pub fn product(&self) -> Product {
        self.product
    }

    /// The test ARK (DER). Pass it, the ASK and the ASVK to
    /// [`super::SnpVerifierBuilder::trust_test_root`].
    #[must_use]
    pub fn ark_der(&self) -> &[u8] {
        &self.ark.der
    }

    /// The test ASK (DER), issuer of the VCEK.
    #[must_use]
    pub fn ask_der(&self) -> &[u8] {
        &self.ask.der
    }

    /// The test ASVK (DER), issuer of the VLEK.
    #[must_use]
    pub fn asvk_der(&self) -> &[u8] {
        &self.asvk.der
    }

    /// The VCEK certificate (DER) for [`Self::chip_id`] and [`Self::tcb`].
    #[must_use]
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }

    /// The VLEK certificate (DER) for [`Self::tcb`].
    #[must_use]
    pub fn vlek_der(&self) -> &[u8] {
        &self.vlek_der
    }

    /// The chip's CHIP_ID (hwID, zero-extended to 64 bytes).
    #[must_use]
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip_id
    }

    /// The TCB the VCEK and VLEK certify.
    #[must_use]
    pub fn tcb(&self) -> TcbParts {
        self.tcb
    }

    /// An extended report's certificate table: ARK, ASK, VCEK.
    #[must_use]
    pub fn cert_table(&self) -> Vec<u8> {
        CertTable::encode(&[
            (CertTableKind::Ark, self.ark_der()),
            (CertTableKind::Ask, self.ask_der()),
            (CertTableKind::Vcek, self.vcek_der()),
        ])
    }

    /// A certificate table for VLEK-signed reports: ARK, ASVK (in the ASK slot), VLEK.
    #[must_use]
    pub fn vlek_cert_table(&self) -> Vec<u8> {
        CertTable::encode(&[
            (CertTableKind::Ark, self.ark_der()),
            (CertTableKind::Ask, self.asvk_der()),
            (CertTableKind::Vlek, self.vlek_der()),
        ])
    }

    /// What the default VCEK certifies.
    #[must_use]
    pub fn vcek_spec(&self) -> LeafSpec {
        LeafSpec {
            hw_id: self.chip_id.get(..self.product.hw_id_len()).map(<[u8]>::to_vec),
            tcb: self.tcb,
            product_name: match self.product {
                Product::Milan => "Milan-B0".into(),
                other => other.name().into(),
            },
            csp_id: None,
            not_before: DEFAULT_NOT_BEFORE,
            not_after: DEFAULT_NOT_AFTER,
            serial: 0,
        }
    }

    /// What the default VLEK certifies.
    #[must_use]
    pub fn vlek_spec(&self) -> LeafSpec {
        LeafSpec {
            hw_id: None,
            product_name: self.product.name().into(),
            csp_id: Some("CN=mooring-test-csp".into()),
            ..self.vcek_spec()
        }
    }

    /// A VCEK certificate for the signer's VCEK key saying what `spec` says, issued by the ASK.
    #[must_use]
    pub fn issue_vcek(&self, spec: &LeafSpec) -> Vec<u8> {
        self.ask.issue_leaf("SEV-VCEK", &self.vcek, spec, self.product, &self.rng)
    }

    /// A VLEK certificate for the signer's VLEK key saying what `spec` says, issued by the ASVK.
    #[must_use]
    pub fn issue_vlek(&self, spec: &LeafSpec) -> Vec<u8> {
        self.asvk.issue_leaf("SEV-VLEK", &self.vlek, spec, self.product, &self.rng)
    }

    /// Report fields a genuine platform would produce for this chip: the latest version,
    /// the product's CPUID, a production policy (SMT allowed, debug off), VMPL 0, every
    /// TCB equal to the certified one, signed by the VCEK.
    #[must_use]
    pub fn report_fields(&self) -> ReportFields {
        let tcb = TcbVersion::from_parts(self.product, self.tcb).raw();
        let cpuid = match self.product {
            Product::Milan => [0x19, 0x01, 0x01],
            Product::Genoa => [0x19, 0x11, 0x01],
            Product::Turin => [0x1A, 0x02, 0x01],
        };
        ReportFields {
            version: 5,
            guest_svn: 0,
            policy: 0x3_0000,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: 1,
            current_tcb: tcb,
            platform_info: 0x25,
            author_key_en: false,
            mask_chip_key: false,
            signing_key: 0,
            report_data: [0; 64],
            measurement: [0x4d; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: [0x11; 32],
            report_id_ma: [0xff; 32],
            reported_tcb: tcb,
            cpuid,
            chip_id: self.chip_id,
            committed_tcb: tcb,
            current_version: [1, 55, 43],
            committed_version: [1, 55, 43],
            launch_tcb: tcb,
            launch_mit_vector: 0,
            current_mit_vector: 0,
        }
    }

    /// A signed report with `fields`, signed by the VLEK when `signing_key` is 1 and by
    /// the VCEK otherwise.
    #[must_use]
    pub fn sign(&self, fields: &ReportFields) -> Vec<u8> {
        let mut report = fields.to_bytes();
        let key = if fields.signing_key == 1 { SigningKey::Vlek } else { SigningKey::Vcek };
        self.resign(&mut report, key);
        report
    }

    /// Signs bytes `0x000..0x2A0` of `report` (which may hold anything) with `key` and
    /// writes `r` and `s` little-endian into the signature field.
    ///
    /// # Panics
    /// If `report` is shorter than the signature field's end, or signing fails.
    #[allow(clippy::expect_used, clippy::indexing_slicing)]
    pub fn resign(&self, report: &mut [u8], key: SigningKey) {
        let pair = match key {
            SigningKey::Vcek => &self.vcek,
            SigningKey::Vlek => &self.vlek,
        };
        let sig = pair.sign(&self.rng, &report[..SIGNED_LEN]).expect("ECDSA P-384 signing");
        let (r, s) = sig.as_ref().split_at(P384_SCALAR_LEN);
        for (i, component) in [r, s].into_iter().enumerate() {
            let start = SIGNED_LEN + i * SIGNATURE_COMPONENT_LEN;
            let field = &mut report[start..start + SIGNATURE_COMPONENT_LEN];
            field.fill(0);
            for (dst, src) in field.iter_mut().zip(component.iter().rev()) {
                *dst = *src;
            }
        }
    }
}
