//! The control plane's certificates: one CA, the API server's serving certificate, a client
//! certificate per identity (the harness as `system:masters`, the controller manager and the
//! scheduler as their own users, so RBAC applies to them as in a real cluster), and the
//! service-account signing key. ECDSA P-256 throughout; written as PEM files under `pki/`.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A certificate and its key, as PEM and as files.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A client identity: the user name (CN) and groups (O) the API server authenticates.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    /// File stem under `pki/`.
    pub file: &'static str,
    pub user: &'static str,
    pub groups: &'static [&'static str],
}

/// The harness, kubectl and the process kubelet: cluster-admin through `system:masters`.
pub const ADMIN: Identity =
    Identity { file: "admin", user: "kubernetes-admin", groups: &["system:masters"] };
/// kube-controller-manager, bound by the bootstrap RBAC policy.
pub const CONTROLLER_MANAGER: Identity =
    Identity { file: "controller-manager", user: "system:kube-controller-manager", groups: &[] };
/// The API server itself when it proxies to an aggregated API (the front proxy): other
/// components' delegated authentication trusts request headers only from this name.
pub const FRONT_PROXY: Identity =
    Identity { file: "front-proxy-client", user: "front-proxy-client", groups: &[] };
/// kube-scheduler, bound by the bootstrap RBAC policy.
pub const SCHEDULER: Identity =
    Identity { file: "scheduler", user: "system:kube-scheduler", groups: &[] };

/// Everything the control plane's flags point at.
#[derive(Debug)]
pub struct Pki {
    pub ca: CertPair,
    pub apiserver: CertPair,
    pub admin: CertPair,
    pub controller_manager: CertPair,
    pub scheduler: CertPair,
    pub front_proxy: CertPair,
    /// Signs service-account tokens (kube-apiserver) and legacy token Secrets (controller manager).
    pub service_account_key: PathBuf,
    /// Its public half, which kube-apiserver verifies tokens with.
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// Generate and write everything under `dir`. `api_ips` and `api_names` go into the serving
    /// certificate's subject alternative names.
    pub fn generate(dir: &Path, api_ips: &[IpAddr], api_names: &[&str]) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let error = |what: &str| {
            let what = what.to_string();
            move |e: rcgen::Error| format!("{what}: {e}")
        };

        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name("mapcache-e2e-ca", &[]);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(error("CA key"))?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(error("CA"))?;
        let ca = write_pair(dir, "ca", issuer.pem(), ca_key_pem)?;

        let leaf = |file: &str,
                    subject: DistinguishedName,
                    usage: ExtendedKeyUsagePurpose,
                    sans: Vec<SanType>|
         -> Result<CertPair, String> {
            let mut params = CertificateParams::default();
            params.distinguished_name = subject;
            params.subject_alt_names = sans;
            params.key_usages =
                vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().map_err(error(file))?;
            let cert = params.signed_by(&key, &*issuer).map_err(error(file))?;
            write_pair(dir, file, cert.pem(), key.serialize_pem())
        };

        let mut sans: Vec<SanType> = api_ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for dns in api_names {
            let dns = (*dns).to_string().try_into().map_err(error("DNS name"))?;
            sans.push(SanType::DnsName(dns));
        }
        let apiserver = leaf(
            "apiserver",
            name("kube-apiserver", &[]),
            ExtendedKeyUsagePurpose::ServerAuth,
            sans,
        )?;
        let client = |identity: Identity| {
            leaf(
                identity.file,
                name(identity.user, identity.groups),
                ExtendedKeyUsagePurpose::ClientAuth,
                Vec::new(),
            )
        };
        let admin = client(ADMIN)?;
        let controller_manager = client(CONTROLLER_MANAGER)?;
        let scheduler = client(SCHEDULER)?;
        let front_proxy = client(FRONT_PROXY)?;

        let service_account = KeyPair::generate().map_err(error("service-account key"))?;
        let service_account_key = dir.join("sa.key");
        let service_account_pub = dir.join("sa.pub");
        write_private(&service_account_key, &service_account.serialize_pem())?;
        std::fs::write(&service_account_pub, service_account.public_key_pem())
            .map_err(|e| format!("write {}: {e}", service_account_pub.display()))?;

        Ok(Self {
            ca,
            apiserver,
            admin,
            controller_manager,
            scheduler,
            front_proxy,
            service_account_key,
            service_account_pub,
        })
    }
}

/// CN = user, one O per group: how the API server reads a client certificate.
fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    name.push(DnType::CommonName, common_name);
    name
}

fn write_pair(
    dir: &Path,
    stem: &str,
    cert_pem: String,
    key_pem: String,
) -> Result<CertPair, String> {
    let cert_file = dir.join(format!("{stem}.crt"));
    let key_file = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_file, &cert_pem)
        .map_err(|e| format!("write {}: {e}", cert_file.display()))?;
    write_private(&key_file, &key_pem)?;
    Ok(CertPair { cert_pem, key_pem, cert_file, key_file })
}

/// A private key, readable by its owner only.
fn write_private(path: &Path, pem: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    file.write_all(pem.as_bytes()).map_err(|e| format!("write {}: {e}", path.display()))
}
