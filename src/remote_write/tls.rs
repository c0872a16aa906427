//! TLS for a receiver whose `tls_config.server_name` is set: the certificate is verified
//! against (and SNI names) that name instead of the URL's host, as Prometheus does. ureq's
//! own rustls connector always uses the URL's host, so this receiver's agent gets this
//! connector at the end of ureq's chain (CONNECT proxy → TCP → this). It uses the same
//! rustls and ring that ureq uses; every other receiver uses ureq's connector.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

use super::client::ClientError;
use crate::config::TlsConfig as TlsSettings;

/// Connects with TLS, verifying the peer as `name`.
#[derive(Debug)]
pub struct NamedTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl NamedTls {
    /// Reads the configured files and builds the rustls config. `server_name` must be set.
    pub fn new(t: &TlsSettings, server_name: &str) -> Result<NamedTls, ClientError> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            ClientError::Unsupported("tls_config.server_name is not a valid DNS name or IP")
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let builder = if t.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &t.ca_file {
                Some(ca) => {
                    let pem = read("ca_file", ca)?;
                    for cert in CertificateDer::pem_slice_iter(&pem) {
                        let cert = cert.map_err(|e| pem_err("ca_file", ca, e.to_string()))?;
                        roots
                            .add(cert)
                            .map_err(|e| pem_err("ca_file", ca, e.to_string()))?;
                    }
                    if roots.is_empty() {
                        return Err(pem_err("ca_file", ca, "no certificate found".into()));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let pem = read("cert_file", cert)?;
                let chain = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_err("cert_file", cert, e.to_string()))?;
                if chain.is_empty() {
                    return Err(pem_err("cert_file", cert, "no certificate found".into()));
                }
                let key_pem = read("key_file", key)?;
                let private = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| pem_err("key_file", key, e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| ClientError::Tls(e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(NamedTls {
            config: Arc::new(config),
            name,
        })
    }
}

impl<In: Transport> Connector<In> for NamedTls {
    type Out = Either<In, NamedTlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let mut conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(NamedTlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// A TLS connection made by [`NamedTls`].
pub struct NamedTlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for NamedTlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedTlsTransport").finish_non_exhaustive()
    }
}

impl Transport for NamedTlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// `insecure_skip_verify`: accepts any certificate, still checking handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadFile {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_err(key: &'static str, path: &Path, reason: String) -> ClientError {
    ClientError::Pem {
        key,
        path: path.to_path_buf(),
        reason,
    }
}
