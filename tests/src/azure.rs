//! An Azure-style confidential VM without Azure: a swtpm provisioned the way an Azure
//! paravisor leaves the vTPM, the real `mooring-client` with `kind = "azure"`, and a
//! loopback stand-in for the instance metadata service. For test bodies: everything here
//! panics on failure, naming what failed.
//!
//! What the paravisor does, done here with tpm2-tools (the independent client):
//!
//! 1. An RSA-2048 restricted signing AK (RSASSA, SHA-256) under the swtpm's RSA EK, made
//!    persistent at 0x81000003 (`tpm2_createak`, `tpm2_evictcontrol`).
//! 2. An HCL report from the attestation crate's test signer ([`hcl`](mooring_attestation::snp::sim::hcl)): an SNP report whose
//!    `REPORT_DATA` is SHA-256 of runtime claims naming that AK (`HCLAkPub`) and the EK
//!    (`HCLEkPub`), written to NV index 0x01400001 defined with owner authorization
//!    (`tpm2_nvdefine -C o`, `tpm2_nvwrite`). libtpms caps an NV index at 2048 bytes
//!    (`TPM_PT_NV_INDEX_MAX`; Azure's index holds 2600), so the claims are the compact form
//!    (keys only) and the index is 2048 bytes, zero-filled after the report.
//!
//! [`ImdsStandIn`] is a local stand-in for Azure's instance metadata service that speaks
//! its format: `GET /metadata/THIM/amd/certification` with `Metadata: true` answers the
//! THIM JSON (`vcekCert`, `tcbm`, `certificateChain`, `cacheControl`) with the test
//! signer's VCEK, ASK and ARK; without the header it answers 400, as IMDS does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use mooring_attestation::crypto::PublicKey;
use mooring_attestation::pem;
use mooring_attestation::snp::sim::hcl::{hcl_report, RuntimeClaimsJson};
use mooring_attestation::snp::sim::TestSigner;
use mooring_attestation::snp::TcbVersion;
use mooring_attestation::tpm::public::Public;
use serde_json::{json, Value};

use crate::broker::Broker;
use crate::client::{ClientVm, SNP_MEASUREMENT};
use crate::EkKind;

/// Where the paravisor keeps the AK.
pub const AK_HANDLE: u32 = 0x8100_0003;
/// Where the paravisor writes the HCL report.
pub const HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// The NV index's size here: libtpms' largest (Azure's is 2600 bytes).
pub const HCL_NV_SIZE: usize = 2048;
/// The metadata service's certification route.
pub const THIM_PATH: &str = "/metadata/THIM/amd/certification";

/// What the runtime claims name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsAk {
    /// The AK at 0x81000003 and the EK, as a paravisor writes them.
    Own,
    /// Another AK of the same vTPM (persistent at 0x81000004), not the one at
    /// [`AK_HANDLE`] that the client quotes with.
    Another,
    /// The AK at 0x81000003, and no EK (`HCLEkPub` left out).
    OwnWithoutEk,
}

/// An Azure-style VM: a [`ClientVm`] whose swtpm holds the AK at [`AK_HANDLE`] and the
/// HCL report at [`HCL_REPORT_INDEX`].
#[derive(Debug)]
pub struct AzureVm {
    pub vm: ClientVm,
    /// The AK's `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// The EK the claims name (`HCLEkPub`).
    pub ek: PublicKey,
    /// The NV index's contents.
    pub hcl_report: Vec<u8>,
}

impl AzureVm {
    /// A VM at `address` whose HCL report `signer` signed, claims naming its own AK; `None`
    /// (after saying why) when swtpm is not installed outside CI.
    pub fn start_or_skip(test: &str, address: IpAddr, signer: &TestSigner) -> Option<Self> {
        Self::start_with_or_skip(test, address, signer, ClaimsAk::Own)
    }

    /// [`AzureVm::start_or_skip`] with claims naming `claims_ak`.
    pub fn start_with_or_skip(
        test: &str,
        address: IpAddr,
        signer: &TestSigner,
        claims_ak: ClaimsAk,
    ) -> Option<Self> {
        let vm = ClientVm::start_or_skip(test, address)?;
        let tools = vm.tpm.tools();
        let ek_handle = format!("{:#010x}", EkKind::Rsa2048.persistent_handle());
        tools.run("tpm2_readpublic", ["-c", &ek_handle, "-o", "ek.pub"]).unwrap();
        let ak_public = persistent_ak(&vm, "ak", AK_HANDLE);
        let claims_ak_public = match claims_ak {
            ClaimsAk::Own | ClaimsAk::OwnWithoutEk => ak_public.clone(),
            ClaimsAk::Another => persistent_ak(&vm, "claimed-ak", AK_HANDLE + 1),
        };
        let read = |name: &str| std::fs::read(tools.path(name)).unwrap();
        let key = |tpm2b: &[u8]| Public::from_tpm2b(tpm2b).unwrap().key().clone();
        let ek = key(&read("ek.pub"));
        let mut claims = RuntimeClaimsJson::compact(&key(&claims_ak_public), &ek).unwrap();
        if claims_ak == ClaimsAk::OwnWithoutEk {
            claims.keys.retain(|k| k.kid != mooring_attestation::snp::azure::EK_KID);
        }
        let claims = claims.to_json();
        let mut fields = signer.report_fields();
        fields.measurement = SNP_MEASUREMENT;
        let mut hcl = hcl_report(signer, &fields, &claims);
        assert!(hcl.len() <= HCL_NV_SIZE, "an HCL report of {} bytes does not fit the NV index", hcl.len());
        hcl.resize(HCL_NV_SIZE, 0);
        std::fs::write(tools.path("hcl.bin"), &hcl).unwrap();
        let index = format!("{HCL_REPORT_INDEX:#010x}");
        let size = HCL_NV_SIZE.to_string();
        tools.run("tpm2_nvdefine", [&index, "-C", "o", "-s", &size, "-a", "ownerread|ownerwrite"]).unwrap();
        tools.run("tpm2_nvwrite", [&index, "-C", "o", "-i", "hcl.bin"]).unwrap();
        tools.flush_all().unwrap();
        Some(Self { vm, ak_public, ek, hcl_report: hcl })
    }

    /// The broker's identity for this VM: SHA-256 of the EK's SubjectPublicKeyInfo, hex.
    pub fn hardware_id(&self) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.ek.to_spki_der()))
    }

    /// (Re)writes the client configuration (`kind = "azure"`) for `broker`, fetching the
    /// VCEK chain from `vcek_url`.
    pub fn write_config(&self, broker: &Broker, vcek_url: &str) {
        let event_log = self.vm.dir.path().join("no-event-log").display().to_string();
        self.vm.write_config_with(
            broker,
            &format!("kind = \"azure\"\nvcek_url = {vcek_url:?}\nevent_log = {event_log:?}\n"),
        );
    }
}

/// A new AK of `vm`'s vTPM, as a paravisor makes it (RSA-2048, restricted signing,
/// RSASSA-SHA256, under the RSA EK), persistent at `handle`; its `TPM2B_PUBLIC` (also in
/// the swtpm's work directory as `NAME.pub`).
pub fn persistent_ak(vm: &ClientVm, name: &str, handle: u32) -> Vec<u8> {
    let tools = vm.tpm.tools();
    let ek_handle = format!("{:#010x}", EkKind::Rsa2048.persistent_handle());
    let (context, public) = (format!("{name}.ctx"), format!("{name}.pub"));
    tools
        .run(
            "tpm2_createak",
            ["-C", &ek_handle, "-c", &context, "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u", &public],
        )
        .unwrap();
    tools.flush_all().unwrap();
    tools.run("tpm2_evictcontrol", ["-C", "o", "-c", &context, &format!("{handle:#010x}")]).unwrap();
    tools.flush_all().unwrap();
    std::fs::read(tools.path(&public)).unwrap()
}

/// A URL nothing answers at (a port bound, then released): a VM without a metadata service.
pub fn unreachable_vcek_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}{THIM_PATH}")
}

/// A broker policy with one Azure class `azure` (audience `payments`) admitting the
/// vTPMs whose EK hashes to one of `hardware_ids`, from `networks`: the SEV-SNP report must
/// show [`SNP_MEASUREMENT`], debug off, VMPL 0; the vTPM's PCR 7 (quoted in SHA-256) must
/// be zero, as on a fresh swtpm.
pub fn azure_policy(hardware_ids: &[String], networks: &[&str]) -> String {
    format!(
        r#"version = 1

[[class]]
name = "azure"
evidence = "azure"
ttl_seconds = 600
audiences = ["payments"]
networks = {networks:?}

[class.match]
hardware_ids = {hardware_ids:?}

[class.snp]
measurements = ["{measurement}"]
min_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}
allow_debug = false
max_vmpl = 0

[class.tpm]
pcr_bank = "sha256"
pcrs = [7]

[class.tpm.pcr_values]
7 = ["{zero}"]
"#,
        measurement = hex::encode(SNP_MEASUREMENT),
        zero = crate::client::ZERO_PCR,
    )
}

/// The THIM certification answer for `signer`'s chip: its VCEK, then its ASK and ARK.
pub fn thim_certification(signer: &TestSigner) -> Value {
    let tcb = TcbVersion::from_parts(signer.product(), signer.tcb()).raw();
    json!({
        "vcekCert": pem::encode("CERTIFICATE", signer.vcek_der()),
        "tcbm": hex::encode_upper(u64::from_le_bytes(tcb).to_be_bytes()),
        "certificateChain": format!(
            "{}{}",
            pem::encode("CERTIFICATE", signer.ask_der()),
            pem::encode("CERTIFICATE", signer.ark_der())
        ),
        "cacheControl": "86400",
    })
}

/// A loopback stand-in for Azure's instance metadata service, speaking its format (see the
/// module documentation). Stopped on drop.
#[derive(Debug)]
pub struct ImdsStandIn {
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ImdsStandIn {
    /// Serves `signer`'s chain on a free port of 127.0.0.1.
    pub fn start(signer: &TestSigner) -> Self {
        let answer = thim_certification(signer);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().route(
                    THIM_PATH,
                    get(move |headers: HeaderMap| {
                        let answer = answer.clone();
                        async move {
                            if headers.get("metadata").is_some_and(|value| value == "true") {
                                (StatusCode::OK, Json(answer))
                            } else {
                                let error =
                                    json!({"error": "Bad request. Required metadata header not specified"});
                                (StatusCode::BAD_REQUEST, Json(error))
                            }
                        }
                    }),
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self { address, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// The certification endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}{THIM_PATH}", self.address)
    }
}

impl Drop for ImdsStandIn {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
