//! A VM's side of the TPM protocol, done with tpm2-tools on a real swtpm.

use std::collections::BTreeMap;

use mooring_attestation::protocol::{
    tpm_qualifying_data, IssuedCredentials, PossessionStatement, Sealed, TpmBeginRequest, TpmChallenge,
    TpmFinishRequest,
};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_tests::{EkKind, Swtpm, SwtpmOptions, Tpm2Tools};

/// A simulated VM: its TPM, EK, AK and credential key K.
pub struct Vm {
    pub tpm: Swtpm,
    pub tools: Tpm2Tools,
}

const K_ATTRIBUTES: &str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign";

impl Vm {
    /// Starts a fresh swtpm and creates the EK, an ECDSA AK and K.
    pub fn start(test: &str, options: SwtpmOptions) -> Option<Self> {
        let tpm = Swtpm::start_or_skip(test, options)?;
        let tools = tpm.tools();
        let vm = Self { tpm, tools };
        vm.create_keys();
        Some(vm)
    }

    fn create_keys(&self) {
        let t = &self.tools;
        t.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]).unwrap();
        t.flush_all().unwrap();
        t.run(
            "tpm2_createak",
            [
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", "ak.pub",
                "-n", "ak.name",
            ],
        )
        .unwrap();
        t.flush_all().unwrap();
        t.run("tpm2_createprimary", ["-C", "o", "-G", "ecc", "-c", "primary.ctx"]).unwrap();
        t.flush_all().unwrap();
        t.run(
            "tpm2_create",
            [
                "-C",
                "primary.ctx",
                "-G",
                "ecc256:ecdsa-sha256",
                "-a",
                K_ATTRIBUTES,
                "-u",
                "k.pub",
                "-r",
                "k.priv",
            ],
        )
        .unwrap();
        t.flush_all().unwrap();
        self.load_keys();
    }

    /// Loads AK and K again (after a swtpm restart, contexts of transient objects are gone).
    pub fn load_keys(&self) {
        let t = &self.tools;
        t.run("tpm2_load", ["-C", "primary.ctx", "-u", "k.pub", "-r", "k.priv", "-c", "k.ctx"]).unwrap();
        t.flush_all().unwrap();
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.tools.path(name)).unwrap()
    }

    pub fn ek_certificate(&self) -> Vec<u8> {
        self.tpm.ek_cert_der(EkKind::Rsa2048).unwrap()
    }

    /// The `begin` request.
    pub fn begin_request(&self) -> TpmBeginRequest {
        TpmBeginRequest {
            ek_public: self.file("ek.pub"),
            ek_certificate: Some(self.ek_certificate()),
            ak_public: self.file("ak.pub"),
            key_public: self.file("k.pub"),
        }
    }

    /// A policy session in `session.ctx` satisfying the EK's PolicySecret(endorsement).
    fn ek_session(&self) -> Result<(), String> {
        for (program, args) in [
            ("tpm2_startauthsession", &["--policy-session", "-S", "session.ctx"][..]),
            ("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"][..]),
        ] {
            self.tools.run(program, args).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// ActivateCredential on the challenge (EK authorized by PolicySecret(endorsement)).
    pub fn activate(&self, challenge: &TpmChallenge) -> Vec<u8> {
        let t = &self.tools;
        let mut file = 0xBADC_C0DEu32.to_be_bytes().to_vec();
        file.extend(1u32.to_be_bytes());
        file.extend(&challenge.credential_blob);
        file.extend(&challenge.encrypted_secret);
        std::fs::write(t.path("cred.bin"), file).unwrap();
        self.ek_session().unwrap();
        t.run(
            "tpm2_activatecredential",
            [
                "-c",
                "ak.ctx",
                "-C",
                "ek.ctx",
                "-i",
                "cred.bin",
                "-o",
                "secret.bin",
                "-P",
                "session:session.ctx",
            ],
        )
        .unwrap();
        t.flush_all().unwrap();
        self.file("secret.bin")
    }

    /// Quote of `selection` with `qualifying_data`; returns (attest, signature, PCR map).
    pub fn quote(
        &self,
        selection: &BTreeMap<String, Vec<u8>>,
        qualifying_data: &[u8],
    ) -> (Vec<u8>, Vec<u8>, BTreeMap<String, BTreeMap<String, String>>) {
        let (bank, indices) = selection.iter().next().unwrap();
        let list =
            format!("{bank}:{}", indices.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
        let t = &self.tools;
        t.run(
            "tpm2_quote",
            [
                "-c",
                "ak.ctx",
                "-l",
                &list,
                "-q",
                &hex::encode(qualifying_data),
                "-g",
                "sha256",
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-o",
                "quote.pcrs",
                "-F",
                "values",
            ],
        )
        .unwrap();
        t.flush_all().unwrap();
        let hash = HashAlg::from_name(bank).unwrap();
        let parsed = PcrValues::from_tpm2_tools(
            &self.file("quote.pcrs"),
            &PcrSelection::single(hash, indices).unwrap(),
        )
        .unwrap();
        let map = BTreeMap::from([(
            bank.clone(),
            parsed.bank(hash).map(|(i, v)| (i.to_string(), hex::encode(v))).collect::<BTreeMap<_, _>>(),
        )]);
        (self.file("quote.msg"), self.file("quote.sig"), map)
    }

    /// TPM2_Certify of K by the AK.
    pub fn certify(&self) -> (Vec<u8>, Vec<u8>) {
        self.tools
            .run(
                "tpm2_certify",
                ["-c", "k.ctx", "-C", "ak.ctx", "-g", "sha256", "-o", "certify.attest", "-s", "certify.sig"],
            )
            .unwrap();
        self.tools.flush_all().unwrap();
        (self.file("certify.attest"), self.file("certify.sig"))
    }

    /// Everything `finish` needs, done honestly.
    pub fn finish_request(&self, challenge: &TpmChallenge) -> TpmFinishRequest {
        let secret = self.activate(challenge);
        let qualifying = tpm_qualifying_data(&challenge.nonce, &self.file("k.pub"));
        let (quote, quote_signature, pcrs) = self.quote(&challenge.pcr_selection, &qualifying);
        let (certify, certify_signature) = self.certify();
        TpmFinishRequest {
            challenge_id: challenge.challenge_id.clone(),
            activated_secret: secret,
            quote,
            quote_signature,
            pcrs,
            event_log: None,
            event_log_sha256: None,
            certify,
            certify_signature,
        }
    }

    /// Extends a PCR (what a different kernel would do).
    pub fn extend(&self, pcr: u8) {
        self.tools.run("tpm2_pcrextend", [format!("{pcr}:sha256={}", "ab".repeat(32))]).unwrap();
    }

    /// A possession statement signed with K in the TPM: (statement, DER signature).
    pub fn prove_possession(&self, audience: &str, now: i64) -> (Vec<u8>, Vec<u8>) {
        // A nonce per statement, as a relying service's request digest would be: the
        // broker refuses a statement it has seen before.
        self.sign_statement(audience, &hex::encode(std::array::from_fn::<u8, 16, _>(|_| rand_byte())), now)
    }

    /// A possession statement for `audience` and `request`, signed with K in the TPM:
    /// (statement, DER signature).
    pub fn sign_statement(&self, audience: &str, request: &str, now: i64) -> (Vec<u8>, Vec<u8>) {
        let statement = serde_json::to_vec(&PossessionStatement {
            purpose: PossessionStatement::PURPOSE.into(),
            audience: audience.into(),
            issued_at: now,
            request: request.into(),
        })
        .unwrap();
        std::fs::write(self.tools.path("statement.json"), &statement).unwrap();
        self.tools
            .run(
                "tpm2_sign",
                ["-c", "k.ctx", "-g", "sha256", "-f", "plain", "-o", "statement.sig", "statement.json"],
            )
            .unwrap();
        self.tools.flush_all().unwrap();
        (statement, self.file("statement.sig"))
    }

    /// Imports a sealed secret under the EK and unseals it with a PolicyPCR session.
    pub fn unseal(&self, credentials: &IssuedCredentials) -> Result<Vec<u8>, String> {
        let secret = credentials.secrets.first().ok_or("no secret released")?;
        let Sealed::TpmImport { public, duplicate, encrypted_seed, pcr_selection } = &secret.sealed else {
            return Err("not a TPM import blob".into());
        };
        let t = &self.tools;
        std::fs::write(t.path("seal.pub"), public).unwrap();
        std::fs::write(t.path("seal.dup"), duplicate).unwrap();
        std::fs::write(t.path("seal.seed"), encrypted_seed).unwrap();
        let list: Vec<String> = pcr_selection
            .iter()
            .map(|(bank, pcrs)| {
                format!("{bank}:{}", pcrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            })
            .collect();
        let run = |program: &str, args: &[&str]| t.run(program, args).map(|_| ()).map_err(|e| e.to_string());
        // tpm2_import and tpm2_load of seal.pub under the EK, each in a fresh EK session.
        let under_ek = |program: &str, rest: &[&str]| {
            self.ek_session()?;
            let mut args = vec!["-C", "ek.ctx", "-P", "session:session.ctx", "-u", "seal.pub"];
            args.extend_from_slice(rest);
            run(program, &args)
        };
        let result = (|| {
            under_ek("tpm2_import", &["-i", "seal.dup", "-s", "seal.seed", "-r", "seal.priv"])?;
            t.flush_all().map_err(|e| e.to_string())?;
            under_ek("tpm2_load", &["-r", "seal.priv", "-c", "seal.ctx"])?;
            t.flush_sessions().map_err(|e| e.to_string())?;
            run("tpm2_startauthsession", &["--policy-session", "-S", "session.ctx"])?;
            run("tpm2_policypcr", &["-S", "session.ctx", "-l", &list.join("+")])?;
            run("tpm2_unseal", &["-c", "seal.ctx", "-p", "session:session.ctx", "-o", "unsealed.bin"])?;
            Ok(())
        })();
        t.flush_all().unwrap();
        result.map(|()| self.file("unsealed.bin"))
    }
}

/// A random byte (for statement nonces).
fn rand_byte() -> u8 {
    let mut byte = [0u8; 1];
    aws_lc_rs::rand::fill(&mut byte).unwrap();
    byte[0]
}
