//! The HTTP client options a job can set beyond auth: `tls_config` (`ca_file` replaces the
//! built-in roots, `cert_file`/`key_file` present a client certificate,
//! `insecure_skip_verify`) and `proxy_url` (http or https CONNECT proxies). Scrapes and
//! http_sd build their ureq agents from these. Files are read once, when the agent is
//! built (a job's agent is rebuilt on reload). `tls_config.server_name` and socks proxies
//! are not supported: asking for them is an error that says so.

use crate::config::TlsConfig;
use std::io;
use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts};
use ureq::Proxy;

/// Why the options could not be turned into a client.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("tls_config: reading {}: {source}", .path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("tls_config: {}: {reason}", .path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("tls_config.server_name is not supported")]
    ServerName,
    #[error("proxy_url: {0}")]
    Proxy(String),
}

/// The ureq pieces for a job's `tls_config` and `proxy_url`.
#[derive(Debug, Default)]
pub struct Transport {
    pub tls: Option<ureq::tls::TlsConfig>,
    pub proxy: Option<Proxy>,
}

impl Transport {
    /// Reads the TLS files and checks the proxy. `None`s give the default transport.
    pub fn new(tls: Option<&TlsConfig>, proxy_url: Option<&str>) -> Result<Self, TransportError> {
        let proxy = match proxy_url {
            None => None,
            Some(p) => {
                let proxy = Proxy::new(p).map_err(|e| TransportError::Proxy(e.to_string()))?;
                if !matches!(
                    proxy.protocol(),
                    ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
                ) {
                    return Err(TransportError::Proxy(
                        "only http and https proxies are supported".into(),
                    ));
                }
                Some(proxy)
            }
        };
        let tls = tls.map(tls_config).transpose()?;
        Ok(Transport { tls, proxy })
    }

    /// True when neither option is set, so the shared default agents serve the job.
    pub fn is_default(&self) -> bool {
        self.tls.is_none() && self.proxy.is_none()
    }
}

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>, TransportError> {
    let bytes = std::fs::read(path).map_err(|source| TransportError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

fn certificates(path: &Path) -> Result<Vec<Certificate<'static>>, TransportError> {
    let certs: Vec<_> = read_pem(path)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(TransportError::BadPem {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn tls_config(t: &TlsConfig) -> Result<ureq::tls::TlsConfig, TransportError> {
    if t.server_name.is_some() {
        return Err(TransportError::ServerName);
    }
    let mut b = ureq::tls::TlsConfig::builder().disable_verification(t.insecure_skip_verify);
    if let Some(ca) = &t.ca_file {
        b = b.root_certs(RootCerts::new_with_certs(&certificates(ca)?));
    }
    if let (Some(cert), Some(key_path)) = (&t.cert_file, &t.key_file) {
        let chain = certificates(cert)?;
        let key: PrivateKey<'static> = read_pem(key_path)?
            .into_iter()
            .find_map(|i| match i {
                PemItem::PrivateKey(k) => Some(k),
                _ => None,
            })
            .ok_or_else(|| TransportError::BadPem {
                path: key_path.clone(),
                reason: "no private key found".into(),
            })?;
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_dedicated_agent() {
        assert!(Transport::new(None, None).expect("ok").is_default());
    }

    #[test]
    fn errors_name_the_option_and_file() {
        let t = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            cert_file: None,
            key_file: None,
            server_name: None,
            insecure_skip_verify: false,
        };
        let e = Transport::new(Some(&t), None).expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let t = TlsConfig {
            ca_file: None,
            server_name: Some("x".into()),
            ..t
        };
        assert!(matches!(
            Transport::new(Some(&t), None),
            Err(TransportError::ServerName)
        ));
        assert!(matches!(
            Transport::new(None, Some("socks5://127.0.0.1:1080")),
            Err(TransportError::Proxy(_))
        ));
        let p = Transport::new(None, Some("http://127.0.0.1:3128")).expect("http proxy");
        assert!(!p.is_default());
    }

    #[test]
    fn insecure_skip_verify_builds_without_files() {
        let t = TlsConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            insecure_skip_verify: true,
        };
        let tr = Transport::new(Some(&t), None).expect("ok");
        assert!(tr.tls.is_some_and(|c| c.disable_verification()));
    }
}
