// `dev-certs`: a development PKI for mutual TLS (SPEC A8, A9), made with rcgen: a root CA,
// an intermediate CA allowed to issue client certificates, a server certificate for
// 127.0.0.1 and localhost, and client certificates for the given CNs.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::args::Args;
use crate::{Failure, Outcome};

pub(crate) const OPTIONS: &[&str] = &["--client"];
pub(crate) const SWITCHES: &[&str] = &["--force"];

pub(crate) const HELP: &str = "\
usage: tower-secure dev-certs <DIR> [--client CN]... [--force]

Writes a development PKI for mutual TLS into DIR (created if needed). For development
only: the CA keys are not kept, nothing is revoked, certificates are valid for a year.

  ca.pem                root CA: trust it for client certificates (ClientAuth roots, ca_file)
                        and in clients for the server certificate
  allowed-ca.pem        intermediate CA that issues the client certificates
  server.pem, .key      server certificate for 127.0.0.1 and localhost (from the root)
  <cn>.pem, <cn>.key    per --client CN: the client certificate followed by the
                        intermediate; the file name is the CN in lower case with
                        characters other than a-z 0-9 . _ - made `-` (SECONDARY/alex ->
                        secondary-alex.pem)

  --client CN   a client certificate with this subject CN (repeatable): a user name as
                the client_cert handler reads it (alex, SECONDARY/alex, alex@tenant.com)
  --force       overwrite files that exist";

/// The CN of the intermediate CA the printed `[intermediate_cert_validation]` allows.
const ALLOWED_CA: &str = "tower-secure dev Allowed Intermediate CA";

type Ca = CertifiedIssuer<'static, KeyPair>;

/// One file to write: its name and its text.
struct Output {
    name: String,
    text: String,
    private: bool,
}

/// `dev-certs`.
pub(crate) fn dev_certs(args: Args) -> Outcome {
    let dir = PathBuf::from(&args.positional(1, 1, HELP)?[0]);
    let clients: Vec<&str> = args.options("--client").collect();
    let outputs = generate(&clients).map_err(|e| Failure::Failed(format!("cannot make the certificates: {e}")))?;
    write_all(&dir, &outputs, args.switch("--force"))?;
    println!("wrote a development PKI to {} (for development only)", dir.display());
    for output in &outputs {
        println!("  {}", output.name);
    }
    println!("\nserve with TlsServer and ClientAuth roots from ca.pem; allow the intermediate with:\n");
    println!("[client_cert]\n\n[intermediate_cert_validation]\nenable = true\ncert_cns = [\"{ALLOWED_CA}\"]");
    Ok(())
}

/// Every certificate and key, in memory: nothing is written unless all of it was made.
fn generate(clients: &[&str]) -> Result<Vec<Output>, rcgen::Error> {
    let root = CertifiedIssuer::self_signed(ca_params("tower-secure dev Root CA"), KeyPair::generate()?)?;
    let allowed = CertifiedIssuer::signed_by(ca_params(ALLOWED_CA), KeyPair::generate()?, &root)?;
    let mut outputs = vec![public("ca.pem", root.pem()), public("allowed-ca.pem", allowed.pem())];
    let mut server = params("127.0.0.1", 1);
    server.subject_alt_names =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?.subject_alt_names;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    outputs.extend(leaf("server", &server, &root, None)?);
    for cn in clients {
        outputs.extend(leaf(&file_name(cn), &client_params(cn), &allowed, Some(&allowed))?);
    }
    Ok(outputs)
}

/// `<file>.pem` (the leaf, then `chain`) and `<file>.key`.
fn leaf(file: &str, params: &CertificateParams, issuer: &Ca, chain: Option<&Ca>) -> Result<[Output; 2], rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let pem: String = std::iter::once(cert.pem()).chain(chain.map(|ca| ca.pem())).collect();
    let key = Output { name: format!("{file}.key"), text: key.serialize_pem(), private: true };
    Ok([public(&format!("{file}.pem"), pem), key])
}

fn public(name: &str, text: String) -> Output {
    Output { name: name.to_owned(), text, private: false }
}

/// The CN in lower case, characters other than `a-z 0-9 . _ -` made `-`.
fn file_name(cn: &str) -> String {
    let keep = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
    cn.to_lowercase().chars().map(|c| if keep(c) { c } else { '-' }).collect()
}

fn name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "tower-secure dev");
    name.push(DnType::CommonName, cn);
    name
}

/// Valid from the start of last year for `years` years after this one.
fn params(cn: &str, years: i32) -> CertificateParams {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // 365.2425 days
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // Within a day of the true year; starting the year before covers the error.
    let year = 1970 + i32::try_from(since_epoch.as_secs() / SECONDS_PER_YEAR).unwrap_or(0);
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
    params
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = params(cn, 10);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = params(cn, 1);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// Writes every file, private keys readable by the owner only; refuses to overwrite
/// (unless `force`) or to write two clients to one file.
fn write_all(dir: &Path, outputs: &[Output], force: bool) -> Outcome {
    let failed = |what: String| Failure::Failed(what);
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].iter().any(|o| o.name == output.name) {
            return Err(failed(format!("two certificates would be written to {}: give distinct CNs", output.name)));
        }
        if !force && dir.join(&output.name).exists() {
            return Err(failed(format!("{} exists: pass --force to overwrite", dir.join(&output.name).display())));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    for output in outputs {
        let path = dir.join(&output.name);
        write_file(&path, &output.text, output.private)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Writes a file; a private one is made readable by its owner only before anything is
/// written to it (a file that existed is narrowed too).
fn write_file(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    file.write_all(text.as_bytes())
}
