//! The mTLS PKI, made with rcgen: root CA -> "Bench Intermediate CA" -> alex's client
//! certificate, and a server certificate for `localhost` / 127.0.0.1 from the root.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use tower_secure_load::data::{DataDir, CLIENT_CA_CN};

fn named(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

fn ca(cn: &str) -> CertificateParams {
    let mut params = named(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

fn key() -> KeyPair {
    KeyPair::generate().expect("generate an ECDSA P-256 key")
}

pub fn write_all(dir: &DataDir) {
    let root = CertifiedIssuer::self_signed(ca("Bench Root CA"), key()).expect("self-sign the root");
    let intermediate = CertifiedIssuer::signed_by(ca(CLIENT_CA_CN), key(), &root).expect("sign the intermediate");

    let server_key = key();
    let mut server = named("localhost");
    server.subject_alt_names =
        vec![SanType::DnsName("localhost".try_into().expect("DNS name")), SanType::IpAddress([127, 0, 0, 1].into())];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server.signed_by(&server_key, &root).expect("sign the server certificate");

    let client_key = key();
    let mut client = named("alex");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client.signed_by(&client_key, &intermediate).expect("sign alex's certificate");

    let write = |path: std::path::PathBuf, text: String| std::fs::write(&path, text).expect("write a PKI file");
    write(dir.ca_cert(), root.pem());
    write(dir.server_cert(), server.pem());
    write(dir.server_key(), server_key.serialize_pem());
    write(dir.client_chain(), format!("{}{}", client.pem(), intermediate.pem()));
    write(dir.client_key(), client_key.serialize_pem());
}
