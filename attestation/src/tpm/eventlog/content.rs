//! Typed event content: what the event data of the common event types says.
//!
//! Decoding is lenient by design: event data is free-form as far as the PCRs are concerned
//! (the digests, not the data, are extended), and real firmware, shim and grub write
//! malformed payloads (padding after device paths, wrong name lengths in
//! `EV_EFI_VARIABLE_AUTHORITY`). Content that does not decode is returned as
//! [`EventKind::Raw`] instead of failing the log; record framing is checked by the parser.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};

use super::event::{Event, EventType};
use super::parse::STARTUP_LOCALITY_SIGNATURE;
use crate::codec::Reader;

/// `TCG_EfiSpecIdEvent.signature` of a crypto-agile log (PFP Table "TCG_EfiSpecIdEvent").
pub(super) const SPEC_ID_EVENT03: &[u8; 16] = b"Spec ID Event03\0";

/// What an event's data says, decoded for the types policy cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// The `Spec ID Event03` header of a crypto-agile log (see [`super::EventLog::banks`]).
    SpecId,
    /// `TCG_EfiStartupLocalityEvent` (PFP Table "Startup Locality Event"): the locality of
    /// `TPM2_Startup`, which becomes the last byte of PCR 0's initial value.
    StartupLocality(u8),
    /// Any other `EV_NO_ACTION` event (SP800-155 reference manifests, Windows WBCL data...).
    NoAction(&'a [u8]),
    /// `EV_SEPARATOR`.
    Separator(Separator<'a>),
    /// `EV_POST_CODE` / `EV_POST_CODE2` carrying a string ("ACPI DATA", "SMM CODE"...).
    PostCode(Cow<'a, str>),
    /// `UEFI_PLATFORM_FIRMWARE_BLOB(2)`: `EV_EFI_PLATFORM_FIRMWARE_BLOB(2)`, or an
    /// `EV_POST_CODE` carrying a blob instead of a string.
    FirmwareBlob(FirmwareBlob<'a>),
    /// `EV_S_CRTM_VERSION` carrying a (usually UTF-16) version string.
    SCrtmVersion(Cow<'a, str>),
    /// `EV_ACTION` string.
    Action(Cow<'a, str>),
    /// `EV_EFI_ACTION` string ("Calling EFI Application from Boot Option", ...).
    EfiAction(Cow<'a, str>),
    /// `EV_IPL` text: grub's `grub_cmd ...` / `kernel_cmdline: ...` strings and file names,
    /// shim's `MokList`, systemd-boot's UTF-16 load options.
    Ipl(Cow<'a, str>),
    /// `EV_EVENT_TAG`: a `TCG_PCClientTaggedEvent`.
    EventTag(TaggedEvent<'a>),
    /// `EV_EFI_VARIABLE_DRIVER_CONFIG`, `EV_EFI_VARIABLE_BOOT(2)`,
    /// `EV_EFI_VARIABLE_AUTHORITY`: a `UEFI_VARIABLE_DATA`.
    EfiVariable(UefiVariable<'a>),
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`, `EV_EFI_BOOT_SERVICES_DRIVER`,
    /// `EV_EFI_RUNTIME_SERVICES_DRIVER`: a `UEFI_IMAGE_LOAD_EVENT`.
    ImageLoad(ImageLoad<'a>),
    /// A type this module does not decode, or content that did not decode.
    Raw(&'a [u8]),
}

/// `EV_SEPARATOR` event data (PFP section 10.4.1): 0 normally, 1 when firmware hit an
/// error before handing over; Windows boot manager uses `"WBCL"` in PCRs 12-14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator<'a> {
    /// `0x00000000`.
    Normal,
    /// `0x00000001`: the separator the firmware extends on an error.
    Error,
    /// Anything else.
    Other(&'a [u8]),
}

impl<'a> Separator<'a> {
    /// Decodes separator event data.
    #[must_use]
    pub fn decode(data: &'a [u8]) -> Self {
        match data {
            [0, 0, 0, 0] => Self::Normal,
            [1, 0, 0, 0] => Self::Error,
            other => Self::Other(other),
        }
    }
}

/// `UEFI_PLATFORM_FIRMWARE_BLOB` / `UEFI_PLATFORM_FIRMWARE_BLOB2` (PFP Tables of the same
/// names): where a measured firmware volume sits in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareBlob<'a> {
    /// `BlobDescription` (`BLOB2` only).
    pub description: Option<&'a [u8]>,
    /// `BlobBase`.
    pub base: u64,
    /// `BlobLength`.
    pub length: u64,
}

/// `TCG_PCClientTaggedEvent` (PFP Table "TCG_PCClientTaggedEvent").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaggedEvent<'a> {
    /// `taggedEventID`.
    pub id: u32,
    /// `taggedEventData`, exactly `taggedEventDataSize` bytes.
    pub data: &'a [u8],
}

/// An EFI GUID in its wire layout (`EFI_GUID`: little-endian `u32`, `u16`, `u16`, then
/// 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// `EFI_GLOBAL_VARIABLE` (`8be4df61-93ca-11d2-aa0d-00e098032b8c`): `SecureBoot`, PK, KEK.
    pub const EFI_GLOBAL_VARIABLE: Self = Self([
        0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
    ]);
    /// `EFI_IMAGE_SECURITY_DATABASE_GUID` (`d719b2cb-3d3a-4596-a3bc-dad00e67656f`): db, dbx.
    pub const IMAGE_SECURITY_DATABASE: Self = Self([
        0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f,
    ]);
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, e0, e1, e2, e3, e4, e5] = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{}-{}",
            u32::from_le_bytes([a0, a1, a2, a3]),
            u16::from_le_bytes([b0, b1]),
            u16::from_le_bytes([c0, c1]),
            hex::encode([d0, d1]),
            hex::encode([e0, e1, e2, e3, e4, e5]),
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `UEFI_VARIABLE_DATA` (PFP Table "UEFI_VARIABLE_DATA").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UefiVariable<'a> {
    /// `VariableName`: the vendor GUID.
    pub vendor: Guid,
    /// `UnicodeName`: `UnicodeNameLength` UTF-16LE code units, as bytes.
    pub unicode_name: &'a [u8],
    /// `VariableData`: `VariableDataLength` bytes.
    pub data: &'a [u8],
}

impl<'a> UefiVariable<'a> {
    /// Decodes `UEFI_VARIABLE_DATA`, which must fill `data` exactly.
    #[must_use]
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(data);
        let vendor = Guid(r.array("UEFI_VARIABLE_DATA.VariableName").ok()?);
        let name_units = r.u64_le("UEFI_VARIABLE_DATA.UnicodeNameLength").ok()?;
        let data_len = r.u64_le("UEFI_VARIABLE_DATA.VariableDataLength").ok()?;
        let name_len = usize::try_from(name_units).ok()?.checked_mul(2)?;
        let unicode_name = r.take(name_len, "UEFI_VARIABLE_DATA.UnicodeName").ok()?;
        let data = r.take(usize::try_from(data_len).ok()?, "UEFI_VARIABLE_DATA.VariableData").ok()?;
        r.expect_end("UEFI_VARIABLE_DATA").ok()?;
        Some(Self { vendor, unicode_name, data })
    }

    /// The variable name (lossy UTF-16 decoding).
    #[must_use]
    pub fn name(&self) -> String {
        char::decode_utf16(utf16_units(self.unicode_name))
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }

    /// Whether the variable is `vendor`:`name`, compared without allocating.
    #[must_use]
    pub fn is(&self, vendor: Guid, name: &str) -> bool {
        self.vendor == vendor && utf16_units(self.unicode_name).eq(name.encode_utf16())
    }
}

/// `UEFI_IMAGE_LOAD_EVENT` (PFP Table "UEFI_IMAGE_LOAD_EVENT").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLoad<'a> {
    /// `ImageLocationInMemory`.
    pub location_in_memory: u64,
    /// `ImageLengthInMemory`.
    pub length_in_memory: u64,
    /// `ImageLinkTimeAddress`.
    pub link_time_address: u64,
    /// `DevicePath`: `LengthOfDevicePath` bytes of `EFI_DEVICE_PATH_PROTOCOL` nodes.
    pub device_path: &'a [u8],
}

/// Device path node type and subtype of a file path (UEFI specification, "Media Device
/// Path", File Path Media Device Path).
const MEDIA_DEVICE_PATH: u8 = 0x04;
const MEDIA_FILEPATH_DP: u8 = 0x04;
/// End of Hardware Device Path, End Entire Device Path.
const END_DEVICE_PATH: u8 = 0x7f;
const END_ENTIRE_DEVICE_PATH: u8 = 0xff;
/// `EFI_DEVICE_PATH_PROTOCOL` header: `Type`, `SubType`, `Length[2]`.
const DEVICE_PATH_HEADER: usize = 4;

impl<'a> ImageLoad<'a> {
    /// Decodes `UEFI_IMAGE_LOAD_EVENT`. Bytes after the device path are ignored: shim and
    /// grub log `sizeof(EFI_IMAGE_LOAD_EVENT)` including padding (seen in real logs).
    #[must_use]
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(data);
        let location_in_memory = r.u64_le("UEFI_IMAGE_LOAD_EVENT.ImageLocationInMemory").ok()?;
        let length_in_memory = r.u64_le("UEFI_IMAGE_LOAD_EVENT.ImageLengthInMemory").ok()?;
        let link_time_address = r.u64_le("UEFI_IMAGE_LOAD_EVENT.ImageLinkTimeAddress").ok()?;
        let path_len = r.u64_le("UEFI_IMAGE_LOAD_EVENT.LengthOfDevicePath").ok()?;
        let device_path = r.take(usize::try_from(path_len).ok()?, "UEFI_IMAGE_LOAD_EVENT.DevicePath").ok()?;
        Some(Self { location_in_memory, length_in_memory, link_time_address, device_path })
    }

    /// The file path named by the device path's File Path nodes, joined with `\`
    /// (`\EFI\BOOT\BOOTX64.EFI`); `None` when there is none or the path is malformed.
    #[must_use]
    pub fn file_path(&self) -> Option<String> {
        let mut r = Reader::new(self.device_path);
        let mut path = String::new();
        while !r.is_empty() {
            let node_type = r.u8("EFI_DEVICE_PATH_PROTOCOL.Type").ok()?;
            let sub_type = r.u8("EFI_DEVICE_PATH_PROTOCOL.SubType").ok()?;
            let len = usize::from(r.u16_le("EFI_DEVICE_PATH_PROTOCOL.Length").ok()?);
            let body = r.take(len.checked_sub(DEVICE_PATH_HEADER)?, "EFI_DEVICE_PATH_PROTOCOL").ok()?;
            match (node_type, sub_type) {
                (END_DEVICE_PATH, END_ENTIRE_DEVICE_PATH) => break,
                (MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP) => {
                    let part = utf16_text(body)?;
                    if !path.is_empty() && !path.ends_with('\\') && !part.starts_with('\\') {
                        path.push('\\');
                    }
                    path.push_str(&part);
                }
                _ => {}
            }
        }
        (!path.is_empty()).then_some(path)
    }
}

impl<'a> Event<'a> {
    /// Decodes the event data according to the event type.
    #[must_use]
    pub fn kind(&self) -> EventKind<'a> {
        decode(self.event_type, self.data).unwrap_or(EventKind::Raw(self.data))
    }
}

fn decode(event_type: EventType, data: &[u8]) -> Option<EventKind<'_>> {
    Some(match event_type {
        EventType::NO_ACTION => no_action(data),
        EventType::SEPARATOR => EventKind::Separator(Separator::decode(data)),
        EventType::POST_CODE | EventType::POST_CODE2 => match text(data) {
            Some(text) => EventKind::PostCode(text),
            None => EventKind::FirmwareBlob(firmware_blob(data, false)?),
        },
        EventType::EFI_PLATFORM_FIRMWARE_BLOB => EventKind::FirmwareBlob(firmware_blob(data, false)?),
        EventType::EFI_PLATFORM_FIRMWARE_BLOB2 => EventKind::FirmwareBlob(firmware_blob(data, true)?),
        EventType::S_CRTM_VERSION => EventKind::SCrtmVersion(text(data)?),
        EventType::ACTION => EventKind::Action(text(data)?),
        EventType::EFI_ACTION => EventKind::EfiAction(text(data)?),
        EventType::IPL => EventKind::Ipl(text(data)?),
        EventType::EVENT_TAG => {
            let mut r = Reader::new(data);
            let id = r.u32_le("TCG_PCClientTaggedEvent.taggedEventID").ok()?;
            let size = usize::try_from(r.u32_le("TCG_PCClientTaggedEvent.taggedEventDataSize").ok()?).ok()?;
            let data = r.take(size, "TCG_PCClientTaggedEvent.taggedEventData").ok()?;
            r.expect_end("TCG_PCClientTaggedEvent").ok()?;
            EventKind::EventTag(TaggedEvent { id, data })
        }
        EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT
        | EventType::EFI_VARIABLE_BOOT2
        | EventType::EFI_VARIABLE_AUTHORITY => EventKind::EfiVariable(UefiVariable::decode(data)?),
        EventType::EFI_BOOT_SERVICES_APPLICATION
        | EventType::EFI_BOOT_SERVICES_DRIVER
        | EventType::EFI_RUNTIME_SERVICES_DRIVER => EventKind::ImageLoad(ImageLoad::decode(data)?),
        _ => return None,
    })
}

fn no_action(data: &[u8]) -> EventKind<'_> {
    if data.starts_with(SPEC_ID_EVENT03) {
        return EventKind::SpecId;
    }
    match data.strip_prefix(STARTUP_LOCALITY_SIGNATURE.as_slice()) {
        Some([locality]) => EventKind::StartupLocality(*locality),
        _ => EventKind::NoAction(data),
    }
}

fn firmware_blob(data: &[u8], with_description: bool) -> Option<FirmwareBlob<'_>> {
    let mut r = Reader::new(data);
    let description = if with_description {
        let size = usize::from(r.u8("UEFI_PLATFORM_FIRMWARE_BLOB2.BlobDescriptionSize").ok()?);
        Some(r.take(size, "UEFI_PLATFORM_FIRMWARE_BLOB2.BlobDescription").ok()?)
    } else {
        None
    };
    let base = r.u64_le("UEFI_PLATFORM_FIRMWARE_BLOB.BlobBase").ok()?;
    let length = r.u64_le("UEFI_PLATFORM_FIRMWARE_BLOB.BlobLength").ok()?;
    r.expect_end("UEFI_PLATFORM_FIRMWARE_BLOB").ok()?;
    Some(FirmwareBlob { description, base, length })
}

fn utf16_units(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|pair| match pair {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    })
}

/// Event data as text: UTF-8 without NULs (trailing NULs dropped), else UTF-16LE.
pub(super) fn text(data: &[u8]) -> Option<Cow<'_, str>> {
    match utf8_text(data) {
        Some(text) => Some(Cow::Borrowed(text)),
        None => utf16_text(data).map(Cow::Owned),
    }
}

/// Highest character accepted in UTF-16 event text. Firmware and boot loader strings stay
/// well below it, while binary data (GUIDs, addresses) read as UTF-16 mostly does not.
const MAX_UTF16_TEXT_CHAR: char = '\u{07ff}';

/// Whether `text` is worth calling text: non-empty, no control characters but tab and
/// line breaks.
fn printable(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// UTF-8 text without control characters; trailing NULs are dropped.
pub(super) fn utf8_text(data: &[u8]) -> Option<&str> {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let text = std::str::from_utf8(data.get(..end)?).ok()?;
    printable(text).then_some(text)
}

/// UTF-16LE text without control characters or characters above U+07FF; trailing NUL
/// code units (and a stray odd trailing zero byte, which old systemd-boot logs) are
/// dropped.
pub(super) fn utf16_text(data: &[u8]) -> Option<String> {
    let data = match data.split_last() {
        Some((0, head)) if data.len() % 2 == 1 => head,
        _ => data,
    };
    if data.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = utf16_units(data).collect();
    let end = units.iter().rposition(|u| *u != 0).map_or(0, |i| i + 1);
    let text = String::from_utf16(units.get(..end)?).ok()?;
    (printable(&text) && text.chars().all(|c| c <= MAX_UTF16_TEXT_CHAR)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_prefers_utf8_and_falls_back_to_utf16() {
        assert_eq!(text(b"ACPI DATA"), Some(Cow::Borrowed("ACPI DATA")));
        assert_eq!(text(b"grub_cmd ls\0"), Some(Cow::Borrowed("grub_cmd ls")));
        let utf16: Vec<u8> = "GCE v1\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(text(&utf16).as_deref(), Some("GCE v1"));
        let mut odd = utf16.clone();
        odd.push(0);
        assert_eq!(text(&odd).as_deref(), Some("GCE v1"));
        assert_eq!(text(&[0x1e, 0xfb, 0x6b, 0x54, 0x00, 0x1d]), None);
        assert_eq!(text(&[]), None);
    }

    #[test]
    fn guid_displays_in_registry_form() {
        assert_eq!(Guid::EFI_GLOBAL_VARIABLE.to_string(), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
        assert_eq!(Guid::IMAGE_SECURITY_DATABASE.to_string(), "d719b2cb-3d3a-4596-a3bc-dad00e67656f");
    }

    #[test]
    fn variable_decoding_is_exact_and_image_paths_join() {
        let mut var = Guid::EFI_GLOBAL_VARIABLE.0.to_vec();
        var.extend_from_slice(&2u64.to_le_bytes());
        var.extend_from_slice(&1u64.to_le_bytes());
        var.extend_from_slice(&[b'P', 0, b'K', 0, 7]);
        let decoded = UefiVariable::decode(&var).unwrap();
        assert!(decoded.is(Guid::EFI_GLOBAL_VARIABLE, "PK"));
        assert!(!decoded.is(Guid::EFI_GLOBAL_VARIABLE, "KEK"));
        assert_eq!(decoded.data, &[7]);
        var.push(0);
        assert_eq!(UefiVariable::decode(&var), None);

        let mut path = Vec::new();
        for part in ["\\EFI\\centos", "grubx64.efi"] {
            let units: Vec<u8> = part.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
            path.extend_from_slice(&[4, 4]);
            path.extend_from_slice(&u16::try_from(units.len() + 4).unwrap().to_le_bytes());
            path.extend_from_slice(&units);
        }
        path.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        let image = ImageLoad {
            location_in_memory: 0,
            length_in_memory: 0,
            link_time_address: 0,
            device_path: &path,
        };
        assert_eq!(image.file_path().as_deref(), Some("\\EFI\\centos\\grubx64.efi"));
        let broken = ImageLoad { device_path: &[4, 4, 2, 0], ..image };
        assert_eq!(broken.file_path(), None);
    }
}
