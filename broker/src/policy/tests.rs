#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::path::Path;

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::attest::{Ak, Signature};
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::quote::{verify_quote, QuoteExpectation};
use mooring_attestation::tpm::sim::{quote_fields, SoftKey, AK_ATTRIBUTES};

use mooring_attestation::snp::appraisal::SnpAppraisal;
use mooring_attestation::snp::sim::{ReportFields, TestSigner};
use mooring_attestation::snp::{SnpCertSource, SnpVerifier, TcbParts};

use super::*;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn tpm_class(extra: &str) -> String {
    format!(
        "version = 1\n\n[[class]]\nname = \"web\"\nevidence = \"tpm\"\nttl_seconds = 600\nnetworks = [\"10.0.0.0/8\"]\n{extra}\n\
         [class.match]\nek_issuers = [\"CN=Vendor CA\"]\n\n[class.tpm]\npcr_bank = \"sha256\"\npcrs = [0, 7]\n\
         [class.tpm.pcr_values]\n7 = [\"{ZERO}\"]\n"
    )
}

/// The appraisal of a correctly signed quote over `values` (sha256) with `log`.
pub(super) fn appraisal(values: &PcrValues, log: Option<&[u8]>) -> Result<TpmAppraisal, Refusal> {
    const NONCE: &[u8] = b"nonce";
    let indices: Vec<u8> = values.bank(HashAlg::Sha256).map(|(index, _)| index).collect();
    let selection = PcrSelection::single(HashAlg::Sha256, &indices).unwrap();
    let attest = quote_fields(NONCE).quote(&selection, &values.digest(&selection, HashAlg::Sha256).unwrap());
    let ak = SoftKey::new(AK_ATTRIBUTES);
    let signature = Signature::parse(&ak.sign(&attest)).unwrap();
    let expected = QuoteExpectation { qualifying_data: NONCE, selection: &selection };
    let quote = verify_quote(Ak::Tpm(ak.public()), &attest, &signature, values, &expected).unwrap();
    TpmAppraisal::new(quote, log, HashAlg::Sha256)
        .map_err(|e| Refusal::new(Code::EventLogMismatch, format!("event log: {e}")))
}

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Path::new("/etc/mooring/policy.toml"))
}

fn error(text: &str) -> PolicyError {
    parse(text).unwrap_err()
}

#[test]
fn a_valid_class_loads() {
    let policy = parse(&tpm_class("")).unwrap();
    assert_eq!(policy.classes().len(), 1);
    assert_eq!(policy.digest().len(), 64);
}

#[test]
fn an_empty_policy_admits_nothing() {
    let policy = parse("version = 1\n").unwrap();
    let who = TpmApplicant { ek_issuer: Some("CN=Vendor CA"), hardware_id: "ab", enrolled: false };
    assert_eq!(policy.match_tpm(who).unwrap_err().code, Code::NoMatchingClass);
}

#[test]
fn field_errors_name_file_and_line() {
    let text = tpm_class("").replace("\"10.0.0.0/8\"", "\"10.0.0.0/33\"");
    let e = error(&text);
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.to_string().starts_with("/etc/mooring/policy.toml:7:"), "{e}");

    let e = error(&tpm_class("colour = \"blue\""));
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("colour"), "{e}");

    let e = error(&tpm_class("").replace(ZERO, "zz"));
    assert!(e.message.contains("not hex"), "{e}");
}

#[test]
fn class_errors_name_the_class_line() {
    let e = error(&tpm_class("").replace("[class.match]\nek_issuers = [\"CN=Vendor CA\"]\n", ""));
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("must say which EKs"), "{e}");
}

#[test]
fn fail_closed_rules() {
    // No boot state pinned.
    let text = tpm_class("").replace(&format!("[class.tpm.pcr_values]\n7 = [\"{ZERO}\"]\n"), "");
    assert!(error(&text).message.contains("pins no boot state"));
    // An empty allowed list.
    assert!(error(&tpm_class("").replace(&format!("[\"{ZERO}\"]"), "[]")).message.contains("admits nothing"));
    // A value for a PCR that is not quoted.
    assert!(error(&tpm_class("").replace("7 = [", "9 = [")).message.contains("not in pcrs"));
    // Wrong digest size for the bank.
    assert!(error(&tpm_class("").replace(ZERO, "00")).message.contains("bytes"));
    // No networks.
    assert!(error(&tpm_class("").replace("[\"10.0.0.0/8\"]", "[]")).message.contains("networks is empty"));
    // A SPIFFE template without the hardware id, or outside the trust domain.
    let text = tpm_class("spiffe_id = \"spiffe://{trust_domain}/vm/{class}\"");
    assert!(error(&text).message.contains("{hardware_id}"));
    let text = tpm_class("spiffe_id = \"spiffe://other/{hardware_id}\"");
    assert!(error(&text).message.contains("must start with"));
    // Unsupported version, duplicate class, mixed evidence tables.
    assert!(error(&tpm_class("").replace("version = 1", "version = 2")).message.contains("version 2"));
    let twice = format!("{}{}", tpm_class(""), tpm_class("").replace("version = 1\n", ""));
    assert!(error(&twice).message.contains("defined twice"));
    let mixed = format!(
        "{}[class.snp]\nmeasurements = []\nmin_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\n",
        tpm_class("")
    );
    assert!(error(&mixed).message.contains("[class.snp]"));
    // A minimum TCB must name every component (fmc only exists on Turin and may be left out).
    let partial = format!("{}[class.snp]\nmeasurements = []\nmin_tcb = {{ snp = 8 }}\n", tpm_class(""));
    assert!(error(&partial).message.contains("missing field `bootloader`"), "{}", error(&partial).message);
}

#[test]
fn matching_requires_every_rule() {
    let text = tpm_class("")
        .replace("ek_issuers = [\"CN=Vendor CA\"]", "ek_issuers = [\"CN=Vendor CA\"]\nenrolled = true");
    let policy = parse(&text).unwrap();
    let who = |enrolled| TpmApplicant { ek_issuer: Some("CN=Vendor CA"), hardware_id: "ab", enrolled };
    assert_eq!(policy.match_tpm(who(false)).unwrap_err().code, Code::NoMatchingClass);
    assert_eq!(policy.match_tpm(who(true)).unwrap().name(), "web");
    let other = TpmApplicant { ek_issuer: Some("CN=Other"), hardware_id: "ab", enrolled: true };
    assert_eq!(policy.match_tpm(other).unwrap_err().code, Code::NoMatchingClass);
}

#[test]
fn addresses_outside_the_networks_are_refused() {
    let policy = parse(&tpm_class("")).unwrap();
    let class = &policy.classes()[0];
    class.check_address("10.1.2.3".parse::<IpAddr>().unwrap()).unwrap();
    let refusal = class.check_address("192.168.1.1".parse().unwrap()).unwrap_err();
    assert_eq!(refusal.code, Code::AddressNotAllowed);
    assert!(refusal.reason.contains("10.0.0.0/8"), "{refusal}");
}

#[test]
fn pcr_values_are_checked() {
    let policy = parse(&tpm_class("")).unwrap();
    let rules = policy.classes()[0].tpm().unwrap();
    let mut values = PcrValues::new();
    values.insert(HashAlg::Sha256, 0, vec![1; 32]).unwrap();
    values.insert(HashAlg::Sha256, 7, vec![0; 32]).unwrap();
    rules.check(&appraisal(&values, None).unwrap()).unwrap();
    let mut changed = PcrValues::new();
    changed.insert(HashAlg::Sha256, 0, vec![1; 32]).unwrap();
    changed.insert(HashAlg::Sha256, 7, vec![2; 32]).unwrap();
    let refusal = rules.check(&appraisal(&changed, None).unwrap()).unwrap_err();
    assert_eq!(refusal.code, Code::PcrValueNotAllowed);
    assert!(refusal.reason.contains("sha256:7"), "{refusal}");
}

#[test]
fn a_required_event_log_must_be_sent() {
    let text = format!("{}[class.tpm.event_log]\nsecure_boot = false\n", tpm_class(""));
    let policy = parse(&text).unwrap();
    let rules = policy.classes()[0].tpm().unwrap();
    let mut values = PcrValues::new();
    values.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
    values.insert(HashAlg::Sha256, 7, vec![0; 32]).unwrap();
    assert_eq!(rules.check(&appraisal(&values, None).unwrap()).unwrap_err().code, Code::EventLogMissing);
}

/// The chip id policy matching is given (the class names no hardware ids, so any will do).
const CHIP: &str = "aa";

/// A simulated SEV-SNP platform and a verifier trusting its test root.
struct SnpPlatform {
    signer: TestSigner,
    verifier: SnpVerifier,
}

fn platform() -> &'static SnpPlatform {
    static PLATFORM: std::sync::OnceLock<SnpPlatform> = std::sync::OnceLock::new();
    PLATFORM.get_or_init(|| {
        let signer = TestSigner::generate();
        let verifier = SnpVerifier::builder()
            .trust_test_root(signer.product(), signer.ark_der(), signer.ask_der(), Some(signer.asvk_der()))
            .build()
            .unwrap();
        SnpPlatform { signer, verifier }
    })
}

/// The appraisal of a genuine report of measurement `11…11`, edited by `edit` first.
fn snp_appraisal(edit: impl FnOnce(&mut ReportFields)) -> SnpAppraisal {
    let platform = platform();
    let mut fields = platform.signer.report_fields();
    fields.measurement = [0x11; 48];
    edit(&mut fields);
    let report = platform.signer.sign(&fields);
    let table = platform.signer.cert_table();
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .unwrap();
    let verified = platform.verifier.verify(&report, SnpCertSource::CertTable(&table), now).unwrap();
    SnpAppraisal::new(verified, &fields.report_data).unwrap()
}

/// An SEV-SNP class admitting measurement `11…11` from TCB `min_tcb` up.
fn snp_policy(min_tcb: TcbParts) -> Policy {
    let m = "11".repeat(48);
    let TcbParts { bootloader, tee, snp, microcode, .. } = min_tcb;
    let text = format!(
        "version = 1\n[[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\nnetworks = [\"10.0.0.0/8\"]\n\
         [class.snp]\nmeasurements = [\"{m}\"]\nmin_tcb = {{ bootloader = {bootloader}, tee = {tee}, snp = {snp}, microcode = {microcode} }}\n"
    );
    parse(&text).unwrap()
}

#[test]
fn an_snp_class_naming_its_chips_refuses_another_chip_for_its_identity_in_full() {
    let tcb = platform().signer.tcb();
    let TcbParts { bootloader, tee, snp, microcode, .. } = tcb;
    let m = "11".repeat(48);
    let listed = "cd".repeat(32);
    let policy = parse(&format!(
        "version = 1\n[[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\nnetworks = [\"10.0.0.0/8\"]\n\
         [class.match]\nhardware_ids = [\"{listed}\"]\n\
         [class.snp]\nmeasurements = [\"{m}\"]\nmin_tcb = {{ bootloader = {bootloader}, tee = {tee}, snp = {snp}, microcode = {microcode} }}\n"
    ))
    .unwrap();
    assert!(policy.match_snp(&snp_appraisal(|_| {}), &listed, false).is_ok());
    let other = "ef".repeat(32);
    let refused = policy.match_snp(&snp_appraisal(|_| {}), &other, false).unwrap_err();
    assert_eq!(refused.code, Code::NoMatchingClass);
    assert!(refused.reason.contains(&other), "{}", refused.reason);
    // A measurement no class lists is refused for the measurement, whatever the chip.
    let measured = snp_appraisal(|f| f.measurement = [0x22; 48]);
    assert_eq!(policy.match_snp(&measured, &listed, false).unwrap_err().code, Code::SnpMeasurement);
}

#[test]
fn snp_classes_check_measurement_debug_vmpl_and_tcb() {
    let tcb = platform().signer.tcb();
    let policy = snp_policy(tcb);
    let class = policy.match_snp(&snp_appraisal(|_| {}), CHIP, false).unwrap();
    class.check_snp(&snp_appraisal(|_| {})).unwrap();

    let other = snp_appraisal(|f| f.measurement = [0x22; 48]);
    assert_eq!(policy.match_snp(&other, CHIP, false).unwrap_err().code, Code::SnpMeasurement);

    let debug = snp_appraisal(|f| f.policy |= 1 << 19);
    assert_eq!(class.check_snp(&debug).unwrap_err().code, Code::SnpDebug);

    let vmpl = snp_appraisal(|f| f.vmpl = 1);
    assert_eq!(class.check_snp(&vmpl).unwrap_err().code, Code::SnpVmpl);

    // The platform's TCB one microcode patch below what a stricter class requires.
    let stricter = snp_policy(TcbParts { microcode: tcb.microcode + 1, ..tcb });
    let class = stricter.match_snp(&snp_appraisal(|_| {}), CHIP, false).unwrap();
    let refusal = class.check_snp(&snp_appraisal(|_| {})).unwrap_err();
    assert_eq!(refusal.code, Code::SnpTcbTooLow);
    assert!(refusal.reason.contains(&format!("microcode is {}", tcb.microcode)), "{refusal}");
}

#[test]
fn secrets_are_read_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.key"), b"secret").unwrap();
    std::fs::write(dir.path().join("big.key"), vec![1; MAX_SECRET_BYTES + 1]).unwrap();
    let with = |file: &str| format!("{}[[class.secrets]]\nname = \"k\"\nfile = \"{file}\"\n", tpm_class(""));
    let path = dir.path().join("policy.toml");
    let policy = Policy::parse(&with("ok.key"), &path).unwrap();
    assert_eq!(policy.classes()[0].secrets()[0].value, b"secret");
    assert!(format!("{:?}", policy.classes()[0].secrets()[0]).contains("redacted"));
    let e = Policy::parse(&with("big.key"), &path).unwrap_err();
    assert!(e.message.contains("129 bytes"), "{e}");
    let e = Policy::parse(&with("missing.key"), &path).unwrap_err();
    assert!(e.message.contains("cannot read"), "{e}");
    // A device is not read (/dev/zero would never end), nor is a directory.
    let e = Policy::parse(&with("/dev/zero"), &path).unwrap_err();
    assert!(e.message.contains("not a regular file"), "{e}");
    let e = Policy::parse(&with("."), &path).unwrap_err();
    assert!(e.message.contains("not a regular file"), "{e}");
    // A proposal for a dry run names its secrets and reads none.
    let proposal = Policy::parse_proposal(&with("/dev/zero"), &path).unwrap();
    assert_eq!(proposal.classes()[0].secrets()[0].name, "k");
    assert!(proposal.classes()[0].secrets()[0].value.is_empty());
}

/// A log that is sent must reproduce every quoted PCR, whether or not rules read it: one
/// that extends none of them is refused, not silently accepted as "replays to the quote".
#[test]
fn an_event_log_that_does_not_reproduce_the_quoted_pcrs_is_refused() {
    let log = mooring_testdata::testdata("tpm/eventlogs/go-tpm-tools/ubuntu-2404-amd-sevsnp.bin");
    let text = tpm_class("").replace("pcrs = [0, 7]", "pcrs = [11]").replace("7 = [", "11 = [");
    let policy = parse(&text).unwrap();
    let rules = policy.classes()[0].tpm().unwrap();
    let mut quoted = PcrValues::new();
    quoted.insert(HashAlg::Sha256, 11, vec![0; 32]).unwrap();
    rules.check(&appraisal(&quoted, Some(&log)).unwrap()).unwrap();
    quoted.insert(HashAlg::Sha256, 11, vec![1; 32]).unwrap();
    let refusal = appraisal(&quoted, Some(&log)).unwrap_err();
    assert_eq!(refusal.code, Code::EventLogMismatch);
    assert!(refusal.reason.contains("PCR 11"), "{refusal}");
}

/// A TPM class with `audiences = ["payments"]` and `federation` tables after it.
fn federating(federation: &str) -> String {
    format!("{}{federation}", tpm_class("audiences = [\"payments\"]"))
}

const AWS: &str = "[[class.federation]]\naudience = \"sts.amazonaws.com\"\n";

#[test]
fn federation_audiences_load_with_their_ttl_and_scopes() {
    let text = federating(&format!("{AWS}\n[[class.federation]]\naudience = \"vault\"\nttl_seconds = 60\nscopes = [\"read\", \"write\"]\n"));
    let policy = parse(&text).unwrap();
    let class = &policy.classes()[0];
    assert_eq!(class.federation_audiences(), ["sts.amazonaws.com", "vault"]);
    let aws = class.federation("sts.amazonaws.com").unwrap();
    assert_eq!((aws.ttl_seconds(), aws.scopes().len()), (300, 0), "default TTL, no scopes");
    let vault = class.federation("vault").unwrap();
    assert_eq!((vault.audience(), vault.ttl_seconds()), ("vault", 60));
    assert_eq!(vault.scopes(), ["read", "write"]);
    assert!(class.federation("payments").is_none());
    assert!(parse(&tpm_class("")).unwrap().classes()[0].federation_audiences().is_empty());
}

#[test]
fn federation_errors_name_the_table_line() {
    // The [[class.federation]] table starts on the line after the class.
    let line = federating("").lines().count() + 1;
    for (table, says) in [
        ("audience = \"two words\"\n", "visible ASCII without spaces"),
        ("audience = \"\"\n", "1 to 255 characters"),
        ("audience = \"payments\"\n", "also a JWT-SVID audience (class \"web\")"),
        ("audience = \"vault\"\nttl_seconds = 5\n", "ttl_seconds 5 outside 10..=3600"),
        ("audience = \"vault\"\nttl_seconds = 7200\n", "ttl_seconds 7200 outside 10..=3600"),
        ("audience = \"vault\"\nscopes = [\"a b\"]\n", "a scope is visible ASCII"),
        ("audience = \"vault\"\nscopes = [\"read\", \"read\"]\n", "scope \"read\" is listed twice"),
    ] {
        let e = error(&federating(&format!("[[class.federation]]\n{table}")));
        assert!(e.message.contains(says), "{table}: {e}");
        assert_eq!(e.line, Some(line), "{table}: {e}");
    }
    // The same audience twice; a key that does not exist (the TOML reader names it).
    let e = error(&federating(&format!("{AWS}{AWS}")));
    assert!(e.message.contains("\"sts.amazonaws.com\" is listed twice"), "{e}");
    assert_eq!(e.line, Some(line + 2), "{e}");
    let e = error(&federating(&format!("{AWS}role = \"admin\"\n")));
    assert!(e.message.contains("role"), "{e}");
    assert_eq!(e.line, Some(line + 2), "{e}");
}

#[test]
fn a_federation_audience_of_one_class_may_not_be_a_jwt_svid_audience_of_another() {
    // The JWT-SVID audience is declared by a later class: still refused.
    let later =
        tpm_class("audiences = [\"vault\"]").replace("version = 1\n", "").replace("\"web\"", "\"db\"");
    let text = format!("{}[[class.federation]]\naudience = \"vault\"\n{later}", tpm_class(""));
    let e = error(&text);
    assert!(e.message.contains("also a JWT-SVID audience (class \"db\")"), "{e}");
}

fn azure_class(tables: &str) -> String {
    let matching = if tables.contains("[class.match]") { "" } else { AZURE_MATCH };
    format!(
        "version = 1\n\n[[class]]\nname = \"cvm\"\nevidence = \"azure\"\nttl_seconds = 600\nnetworks = [\"10.0.0.0/8\"]\n{matching}{tables}"
    )
}

const AZURE_MATCH: &str = "[class.match]\nenrolled = true\n";

const AZURE_SNP: &str = "[class.snp]\nmeasurements = [\"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"]\n\
     min_tcb = { bootloader = 0, tee = 0, snp = 0, microcode = 0 }\n";

fn azure_tpm(bank: &str, pcrs: &str) -> String {
    format!("[class.tpm]\npcr_bank = \"{bank}\"\npcrs = {pcrs}\n[class.tpm.pcr_values]\n7 = [\"{ZERO}\"]\n")
}

#[test]
fn an_azure_class_needs_both_tables_and_quotes_sha256() {
    let policy = parse(&azure_class(&format!("{AZURE_SNP}{}", azure_tpm("sha256", "[0, 7]")))).unwrap();
    assert_eq!(
        policy.azure_selection().unwrap(),
        std::collections::BTreeMap::from([("sha256".to_owned(), vec![0, 7])])
    );
    assert!(parse(&tpm_class("")).unwrap().azure_selection().is_none());

    let missing_tpm = error(&azure_class(AZURE_SNP));
    assert!(missing_tpm.message.contains("needs a [class.tpm] table"), "{missing_tpm}");
    let missing_snp = error(&azure_class(&azure_tpm("sha256", "[7]")));
    assert!(missing_snp.message.contains("needs a [class.snp] table"), "{missing_snp}");
    let sha1 = error(&azure_class(&format!(
        "{AZURE_SNP}{}",
        azure_tpm("sha1", "[7]").replace(ZERO, &"00".repeat(20))
    )));
    assert!(sha1.message.contains("sha256 bank"), "{sha1}");
    let issuers = error(&azure_class(&format!(
        "[class.match]\nek_issuers = [\"CN=x\"]\n{AZURE_SNP}{}",
        azure_tpm("sha256", "[7]")
    )));
    assert!(issuers.message.contains("ek_issuers does not apply"), "{issuers}");
    let secrets = error(&azure_class(&format!(
        "{AZURE_SNP}{}[[class.secrets]]\nname = \"db\"\nfile = \"db.key\"\n",
        azure_tpm("sha256", "[7]")
    )));
    assert!(secrets.message.contains("secrets are not released to Azure"), "{secrets}");
    // Every Azure VM shows the paravisor's measurement: the class must name its vTPMs.
    let anyone = error(&azure_class(&format!("[class.match]\n{AZURE_SNP}{}", azure_tpm("sha256", "[7]"))));
    assert!(anyone.message.contains("needs hardware_ids or enrolled"), "{anyone}");
    // Only the paravisor at VMPL 0 vouches for the runtime claims.
    let vmpl = error(&azure_class(&format!("{AZURE_SNP}max_vmpl = 2\n{}", azure_tpm("sha256", "[7]"))));
    assert!(vmpl.message.contains("VMPL 0"), "{vmpl}");
}

#[test]
fn the_azure_selection_is_every_pcr_an_azure_class_appraises() {
    let second = azure_class(&format!("{AZURE_SNP}{}", azure_tpm("sha256", "[4, 7]")))
        .replace("version = 1\n", "")
        .replace("\"cvm\"", "\"other\"");
    let policy =
        parse(&format!("{}{second}", azure_class(&format!("{AZURE_SNP}{}", azure_tpm("sha256", "[0, 7]")))))
            .unwrap();
    assert_eq!(policy.azure_selection().unwrap()["sha256"], vec![0, 4, 7]);
}

#[test]
fn a_quote_that_does_not_cover_a_class_pcr_is_refused() {
    let policy = parse(&tpm_class("")).unwrap();
    let rules = policy.classes()[0].tpm().unwrap();
    let mut values = PcrValues::new();
    values.insert(HashAlg::Sha256, 7, vec![0; 32]).unwrap();
    // PCR 0 is appraised by the class, not quoted.
    let refusal = rules.check(&appraisal(&values, None).unwrap()).unwrap_err();
    assert_eq!(refusal.code, Code::PcrSelectionMismatch, "{}", refusal.reason);
    assert!(refusal.reason.contains("sha256:0"), "{}", refusal.reason);
}

#[test]
fn the_brokers_own_audiences_are_refused_to_classes() {
    use mooring_attestation::protocol::{EXCHANGE_AUDIENCE, RETIRE_AUDIENCE};
    for reserved in [RETIRE_AUDIENCE, EXCHANGE_AUDIENCE] {
        let text = tpm_class(&format!("audiences = [{reserved:?}]"));
        let e = error(&text);
        assert!(e.message.contains("are the broker's own"), "{e}");
        let e = error(&federating(&format!("[[class.federation]]\naudience = {reserved:?}\n")));
        assert!(e.message.contains("are the broker's own"), "{e}");
    }
}
