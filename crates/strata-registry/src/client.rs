//! The HTTP side of the distribution spec: one repository of one registry, its scheme
//! found by the `/v2/` check, anonymous, Basic or Bearer-token auth (the token fetched
//! again when it expires), retries with backoff for 429, 5xx and broken connections.
//! All network code of Strata goes through here.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::{self, Credentials};
use crate::error::{RegistryError, Result};
use strata_store::refs::Reference;

/// How many times a request is sent before a 429, 5xx or transport error is final.
const ATTEMPTS: u32 = 4;
/// Error bodies and token answers are read up to this size.
const SMALL_BODY: u64 = 1 << 16;

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// false: HTTPS without certificate checks, and plain HTTP when HTTPS fails.
    pub tls_verify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { tls_verify: true }
    }
}

/// A request body that can be sent again on a retry.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, reported to the progress as they are sent.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        progress: &'a dyn strata_store::Progress,
    },
}

pub struct Client {
    agent: ureq::Agent,
    /// `https://host` or `http://host`.
    base: String,
    registry: String,
    repository: String,
    /// `pull` or `pull,push`.
    actions: &'static str,
    creds: Option<Credentials>,
    /// The `Authorization` header value in use, once a challenge asked for one.
    authorization: Mutex<Option<String>>,
}

fn agent(tls_verify: bool) -> Result<ureq::Agent> {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(120))
        .redirects(8)
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")));
    if !tls_verify {
        b = b.tls_config(Arc::new(insecure::config()?));
    }
    Ok(b.build())
}

impl Client {
    /// Checks `/v2/` of the registry of `reference` and authenticates for `push` or pull.
    pub fn connect(reference: &Reference, push: bool, opts: Options) -> Result<Client> {
        let creds = auth::lookup(&reference.registry, &reference.repository)?;
        Client::connect_with(reference, push, opts, creds)
    }

    /// As [`Client::connect`], with these credentials (or none) instead of the stored ones.
    pub fn connect_with(
        reference: &Reference,
        push: bool,
        opts: Options,
        creds: Option<Credentials>,
    ) -> Result<Client> {
        let host = reference.api_host();
        // A registry that registries.conf calls insecure is reached as with --tls-verify=false.
        let opts = Options { tls_verify: opts.tls_verify && !crate::config::insecure(&reference.registry) };
        let mut client = Client {
            agent: agent(opts.tls_verify)?,
            base: format!("https://{host}"),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            actions: if push { "pull,push" } else { "pull" },
            creds,
            authorization: Mutex::new(None),
        };
        match client.ping() {
            Err(RegistryError::Transport { .. }) if !opts.tls_verify => {
                tracing::debug!("{host}: HTTPS failed, trying plain HTTP (--tls-verify=false)");
                client.base = format!("http://{host}");
                client.ping()?;
            }
            other => other?,
        }
        Ok(client)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn ping(&self) -> Result<()> {
        self.request("GET", "/v2/", &[], Body::Empty, "API check (/v2/)").map(|_| ())
    }

    /// `/v2/<repository>/<rest>`.
    pub fn repo_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.repository)
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    fn transport(&self, what: &str, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.clone(),
            what: what.to_string(),
            message: message.to_string(),
        }
    }

    /// Sends a request; answers 2xx (and 3xx the agent did not follow) as `Ok`. On 401
    /// it answers the challenge and sends again once; 429, 5xx and transport errors are
    /// retried with backoff.
    pub fn request(
        &self,
        method: &str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        what: &str,
    ) -> Result<ureq::Response> {
        let url = self.url(path_or_url);
        let mut answered_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let authorization = self.authorization.lock().map(|a| a.clone()).unwrap_or(None);
            if let Some(a) = &authorization {
                req = req.set("Authorization", a);
            }
            let sent = match body {
                Body::Empty => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
                Body::File { path, offset, len, progress } => {
                    use std::io::{Seek, SeekFrom};
                    let io = |cause| strata_store::StoreError::Io { path: path.to_path_buf(), cause };
                    let mut file = std::fs::File::open(path).map_err(io)?;
                    file.seek(SeekFrom::Start(offset)).map_err(io)?;
                    let inner = std::io::BufReader::with_capacity(1 << 17, file).take(len);
                    let body = strata_store::progress::ProgressReader { inner, progress };
                    req.set("Content-Length", &len.to_string()).send(body)
                }
            };
            let retry_after = match sent {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !answered_challenge => {
                    answered_challenge = true;
                    let challenge = resp.header("WWW-Authenticate").map(str::to_string);
                    self.answer(challenge.as_deref(), what)?;
                    continue;
                }
                Err(ureq::Error::Status(code, resp)) if code == 429 || code >= 500 => {
                    let after = resp.header("Retry-After").and_then(|s| s.trim().parse::<u64>().ok());
                    if attempt >= ATTEMPTS {
                        return Err(self.status_error(code, resp, what));
                    }
                    tracing::warn!("{}: {what}: {code}, trying again", self.registry);
                    after.map(|s| Duration::from_secs(s.min(10)))
                }
                Err(ureq::Error::Status(code, resp)) => return Err(self.status_error(code, resp, what)),
                Err(ureq::Error::Transport(t)) => {
                    // A refused connection or a TLS failure will not mend: the first one
                    // says so (and lets the /v2/ check fall back to HTTP at once).
                    let lasting = matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed
                            | ureq::ErrorKind::Dns
                            | ureq::ErrorKind::InvalidUrl
                            | ureq::ErrorKind::UnknownScheme
                            | ureq::ErrorKind::TooManyRedirects
                            | ureq::ErrorKind::BadHeader
                    ) || t.to_string().contains("tls");
                    if lasting || attempt >= ATTEMPTS {
                        return Err(self.transport(what, t));
                    }
                    tracing::warn!("{}: {what}: {t}, trying again", self.registry);
                    None
                }
            };
            std::thread::sleep(retry_after.unwrap_or(Duration::from_millis(250 << (attempt - 1))));
        }
    }

    fn status_error(&self, status: u16, resp: ureq::Response, what: &str) -> RegistryError {
        let mut text = String::new();
        let _ = resp.into_reader().take(SMALL_BODY).read_to_string(&mut text);
        // The spec's error body: {"errors": [{"code": ..., "message": ...}]}.
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let errs = v.get("errors")?.as_array()?;
                let parts: Vec<String> = errs
                    .iter()
                    .map(|e| {
                        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                        format!("{code}: {msg}")
                    })
                    .collect();
                Some(parts.join("; "))
            })
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        let message = match status {
            401 if self.creds.is_none() => format!("{message} (not logged in: strata login {})", self.registry),
            401 => format!("{message} (the credentials were refused)"),
            403 => format!("{message} (access denied)"),
            _ => message,
        };
        RegistryError::Status { registry: self.registry.clone(), what: what.to_string(), status, message }
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the credentials, or a Bearer
    /// token from the realm for this repository's scope.
    fn answer(&self, challenge: Option<&str>, what: &str) -> Result<()> {
        let refused = |message: String| RegistryError::Refused {
            registry: self.registry.clone(),
            what: what.to_string(),
            message,
        };
        let challenge = challenge
            .and_then(auth::parse_challenge)
            .ok_or_else(|| refused("401 without a usable WWW-Authenticate challenge".into()))?;
        let value = match challenge.scheme.as_str() {
            "basic" => match &self.creds {
                Some(c) => c.basic_header(),
                None => return Err(refused(format!("authentication required: strata login {}", self.registry))),
            },
            "bearer" => format!("Bearer {}", self.token(&challenge.params, what)?),
            other => return Err(refused(format!("unsupported authentication scheme '{other}'"))),
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value);
        }
        Ok(())
    }

    fn token(&self, params: &std::collections::BTreeMap<String, String>, what: &str) -> Result<String> {
        let realm = params.get("realm").ok_or_else(|| RegistryError::Refused {
            registry: self.registry.clone(),
            what: what.to_string(),
            message: "Bearer challenge without a realm".into(),
        })?;
        let what = format!("token for {what} from {realm}");
        // Credentials that went to the registry over HTTPS do not go to a token service
        // over plain HTTP.
        if self.creds.is_some() && self.base.starts_with("https://") && !realm.starts_with("https://") {
            return Err(RegistryError::Refused {
                registry: self.registry.clone(),
                what,
                message: "the token service is not HTTPS: credentials not sent".into(),
            });
        }
        let mut req = self.agent.get(realm).query("scope", &format!("repository:{}:{}", self.repository, self.actions));
        if let Some(service) = params.get("service") {
            req = req.query("service", service);
        }
        if let Some(c) = &self.creds {
            req = req.query("account", &c.user).set("Authorization", &c.basic_header());
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => return Err(self.status_error(code, resp, &what)),
            Err(ureq::Error::Transport(t)) => return Err(self.transport(&what, t)),
        };
        let mut text = String::new();
        resp.into_reader().take(SMALL_BODY).read_to_string(&mut text).map_err(|e| self.transport(&what, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| RegistryError::Refused {
            registry: self.registry.clone(),
            what: what.clone(),
            message: format!("bad token answer: {e}"),
        })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Refused {
                registry: self.registry.clone(),
                what,
                message: "token answer has no token".into(),
            })
    }
}

/// `--tls-verify=false`: TLS that takes any certificate.
mod insecure {
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use crate::error::{RegistryError, Result};

    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    // ring is the provider ureq 2 builds its own TLS on; no second one is compiled in.
    #[allow(deprecated)]
    pub fn config() -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::Reference(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth())
    }
}
