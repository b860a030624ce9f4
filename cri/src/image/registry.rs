//! Registry endpoints, TLS settings and credentials for a pull.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::ImageError;
use crate::config::{RegistryHost, RegistryHosts};

/// Credentials from a CRI `AuthConfig` or a Docker `config.json` entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Base64 of `username:password`.
    pub auth: String,
    pub server_address: String,
    /// OAuth2 refresh token, exchanged for an access token at the registry's token service.
    pub identity_token: String,
    /// Bearer token sent to the registry as is.
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("has_secret", &!self.is_empty())
            .finish()
    }
}

impl Credentials {
    fn is_empty(&self) -> bool {
        self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    /// Returns the username and password, decoding `auth` when the plain fields are empty.
    fn basic(&self) -> Option<(String, String)> {
        if !self.username.is_empty() || !self.password.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        if self.auth.is_empty() {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }
}

/// One place to fetch an image from: a mirror or the upstream registry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host (and port) to connect to.
    pub host: String,
    /// Whether this is a mirror standing in for the reference's own registry.
    pub mirror: bool,
    settings: RegistryHost,
}

impl Endpoint {
    /// Returns the reference rewritten to be fetched from this endpoint.
    pub fn reference_for(&self, reference: &Reference) -> Reference {
        let mut rewritten = reference.clone();
        if self.mirror {
            rewritten.set_mirror_registry(self.host.clone());
        }
        rewritten
    }

    fn scheme(&self) -> &'static str {
        if self.settings.plain_http {
            "http"
        } else {
            "https"
        }
    }
}

/// Resolves endpoints and builds registry clients from the per-host settings.
pub struct Registries {
    hosts: RegistryHosts,
    docker_config: Option<std::path::PathBuf>,
    progress_timeout: Duration,
}

impl Registries {
    pub fn new(
        hosts: RegistryHosts,
        docker_config: Option<std::path::PathBuf>,
        progress_timeout: Duration,
    ) -> Self {
        Self {
            hosts,
            docker_config,
            progress_timeout,
        }
    }

    /// Returns the endpoints to try for `registry`: its mirrors in configured order, then the
    /// registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let own = self.hosts.get(registry).cloned().unwrap_or_default();
        let mut endpoints: Vec<Endpoint> = own
            .mirrors
            .iter()
            .map(|mirror| Endpoint {
                host: mirror.clone(),
                mirror: true,
                settings: self.hosts.get(mirror).cloned().unwrap_or_default(),
            })
            .collect();
        endpoints.push(Endpoint {
            host: registry.to_string(),
            mirror: false,
            settings: own,
        });
        endpoints
    }

    /// Builds a registry client for one endpoint. Each pull gets its own client, so credentials
    /// and tokens of one pull never serve another.
    pub fn client(&self, endpoint: &Endpoint) -> Result<Client, ImageError> {
        let mut config = ClientConfig {
            protocol: if endpoint.settings.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: endpoint.settings.skip_verify,
            read_timeout: Some(self.progress_timeout),
            connect_timeout: Some(Duration::from_secs(10)),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        if let Some(ca_file) = &endpoint.settings.ca_file {
            config.extra_root_certificates.push(read_ca(ca_file)?);
        }
        // Client::new would fall back to a default client on error, without this endpoint's
        // CA, protocol and verification settings, and that fallback panics on a host without
        // a system CA store.
        Client::try_from(config).map_err(|err| ImageError::Registry {
            registry: endpoint.host.clone(),
            detail: format!(
                "cannot set up an HTTP client for it: {err}; check its ca_file, or install the \
                 ca-certificates package when the host has no system CA store"
            ),
        })
    }

    /// Chooses the credentials for an endpoint: those of the request when they are meant for
    /// this host (or name no host), otherwise the Docker config file's entry for the host.
    pub async fn auth_for(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        request: Option<&Credentials>,
    ) -> Result<RegistryAuth, ImageError> {
        let from_request = request
            .filter(|creds| !creds.is_empty() || !creds.username.is_empty())
            .filter(|creds| {
                creds.server_address.is_empty()
                    || same_host(&creds.server_address, &endpoint.host)
                    || same_host(&creds.server_address, reference.registry())
            });
        let credentials = match from_request {
            Some(creds) => Some(creds.clone()),
            None => self.docker_config_credentials(&endpoint.host),
        };
        let Some(credentials) = credentials else {
            return Ok(RegistryAuth::Anonymous);
        };

        if !credentials.registry_token.is_empty() {
            return Ok(RegistryAuth::Bearer(credentials.registry_token.clone()));
        }
        if !credentials.identity_token.is_empty() {
            let token = self
                .exchange_identity_token(endpoint, reference, &credentials)
                .await?;
            return Ok(RegistryAuth::Bearer(token));
        }
        match credentials.basic() {
            Some((user, password)) => Ok(RegistryAuth::Basic(user, password)),
            None => Ok(RegistryAuth::Anonymous),
        }
    }

    fn docker_config_credentials(&self, host: &str) -> Option<Credentials> {
        let path = self.docker_config.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let config: serde_json::Value = match serde_json::from_str(&text) {
            Ok(config) => config,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unreadable Docker config file");
                return None;
            }
        };
        let auths = config.get("auths")?.as_object()?;
        let (_, entry) = auths.iter().find(|(key, _)| same_host(key, host))?;
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(|value| value.as_str())
                .unwrap_or_default()
                .to_string()
        };
        Some(Credentials {
            username: field("username"),
            password: field("password"),
            auth: field("auth"),
            server_address: host.to_string(),
            identity_token: field("identitytoken"),
            registry_token: field("registrytoken"),
        })
    }

    /// Exchanges an OAuth2 refresh token for an access token at the token service named by the
    /// registry's bearer challenge.
    async fn exchange_identity_token(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<String, ImageError> {
        let unauthorized = |detail: String| ImageError::Unauthorized {
            registry: endpoint.host.clone(),
            reference: reference.whole(),
            detail,
        };
        let unavailable = |err: reqwest::Error| ImageError::RegistryUnavailable {
            registry: endpoint.host.clone(),
            detail: err.to_string(),
        };
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(endpoint.settings.skip_verify)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(self.progress_timeout);
        if let Some(ca_file) = &endpoint.settings.ca_file {
            let pem = std::fs::read(ca_file).map_err(|err| ImageError::io("read", ca_file, err))?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|err| ImageError::Registry {
                    registry: endpoint.host.clone(),
                    detail: format!("invalid CA file {}: {err}", ca_file.display()),
                })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(unavailable)?;

        let ping = format!(
            "{}://{}/v2/",
            endpoint.scheme(),
            registry_host(&endpoint.host)
        );
        let response = http.get(&ping).send().await.map_err(unavailable)?;
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_bearer_challenge)
            .ok_or_else(|| {
                unauthorized("the registry sent no bearer challenge for the identity token".into())
            })?;

        let scope = format!("repository:{}:pull", reference.repository());
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", credentials.identity_token.as_str()),
            ("client_id", "berth"),
            ("scope", scope.as_str()),
        ];
        if let Some(service) = &challenge.service {
            form.push(("service", service.as_str()));
        }
        let response = http
            .post(&challenge.realm)
            .form(&form)
            .send()
            .await
            .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unauthorized(format!(
                "the token service {} answered {}",
                challenge.realm,
                response.status()
            )));
        }
        let body: serde_json::Value = response.json().await.map_err(unavailable)?;
        body.get("access_token")
            .or_else(|| body.get("token"))
            .and_then(|token| token.as_str())
            .map(str::to_string)
            .ok_or_else(|| unauthorized("the token service sent no access token".into()))
    }
}

/// The parts of a `WWW-Authenticate: Bearer ...` challenge that a token request needs.
#[derive(Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
}

/// Parses a bearer challenge such as `Bearer realm="https://auth/token",service="registry"`.
pub fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after_key) = rest.split_once('=')?;
        let (value, after_value) = if let Some(quoted) = after_key.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after_key.find(',').unwrap_or(after_key.len());
            (&after_key[..end], &after_key[end..])
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = after_value.trim_start_matches([',', ' ']);
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
    })
}

/// Maps a registry client error to an image error naming the registry and reference.
pub fn map_registry_error(
    err: OciDistributionError,
    registry: &str,
    reference: &str,
) -> ImageError {
    let unavailable = |detail: String| ImageError::RegistryUnavailable {
        registry: registry.to_string(),
        detail,
    };
    let not_found = |detail: String| ImageError::NotFound {
        reference: reference.to_string(),
        detail,
    };
    let unauthorized = |detail: String| ImageError::Unauthorized {
        registry: registry.to_string(),
        reference: reference.to_string(),
        detail,
    };
    match err {
        OciDistributionError::RequestError(err) => unavailable(error_chain(&err)),
        OciDistributionError::ImageManifestNotFoundError(detail) => not_found(detail),
        OciDistributionError::AuthenticationFailure(detail) => unauthorized(detail),
        OciDistributionError::UnauthorizedError { url } => {
            unauthorized(format!("{url} answered 401 Unauthorized"))
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let detail = format!("{url}: {envelope}");
            if codes.iter().any(|code| {
                matches!(
                    code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found(detail)
            } else if codes
                .iter()
                .any(|code| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(detail)
            } else if codes
                .iter()
                .any(|code| matches!(code, OciErrorCode::Toomanyrequests))
            {
                unavailable(detail)
            } else {
                ImageError::Registry {
                    registry: registry.to_string(),
                    detail,
                }
            }
        }
        OciDistributionError::ServerError { code, url, message } => {
            let detail = format!("{url} answered HTTP {code}: {}", message.trim());
            match code {
                404 => not_found(detail),
                401 | 403 => unauthorized(detail),
                429 | 500..=599 => unavailable(detail),
                _ => ImageError::Registry {
                    registry: registry.to_string(),
                    detail,
                },
            }
        }
        OciDistributionError::DigestError(err) => ImageError::DigestMismatch {
            digest: reference.to_string(),
            actual: err.to_string(),
        },
        other => ImageError::Registry {
            registry: registry.to_string(),
            detail: other.to_string(),
        },
    }
}

/// Renders an error with its sources, since reqwest hides the cause ("connection refused")
/// behind a generic top-level message.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read_ca(path: &Path) -> Result<Certificate, ImageError> {
    let data = std::fs::read(path).map_err(|err| ImageError::io("read CA file", path, err))?;
    Ok(Certificate {
        encoding: CertificateEncoding::Pem,
        data,
    })
}

/// Returns the host that serves a registry name, because Docker Hub's API lives at
/// `index.docker.io`.
fn registry_host(host: &str) -> &str {
    if host == "docker.io" {
        "index.docker.io"
    } else {
        host
    }
}

/// Compares a Docker config key or CRI server address (`https://index.docker.io/v1/`,
/// `registry:5000`) with a registry host, treating Docker Hub's aliases as one.
fn same_host(address: &str, host: &str) -> bool {
    let stripped = address
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let name = stripped.split('/').next().unwrap_or_default();
    let canonical = |value: &str| match value {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    };
    canonical(name) == canonical(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_is_parsed() {
        let challenge = parse_bearer_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        )
        .unwrap();
        assert_eq!(challenge.realm, "https://auth.example/token");
        assert_eq!(challenge.service.as_deref(), Some("registry.example"));
    }

    #[test]
    fn basic_challenge_is_not_bearer() {
        assert_eq!(parse_bearer_challenge(r#"Basic realm="registry""#), None);
    }

    #[test]
    fn auth_field_decodes_to_basic() {
        let creds = Credentials {
            auth: base64::engine::general_purpose::STANDARD.encode("user:s3cret"),
            ..Credentials::default()
        };
        assert_eq!(creds.basic(), Some(("user".into(), "s3cret".into())));
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = Credentials {
            username: "user".into(),
            password: "s3cret".into(),
            registry_token: "tok3n".into(),
            ..Credentials::default()
        };
        let text = format!("{creds:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("tok3n"), "{text}");
    }

    #[test]
    fn invalid_ca_file_fails_client() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(
            &ca_file,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut hosts = RegistryHosts::new();
        hosts.insert(
            "registry.test".to_string(),
            crate::config::RegistryHost {
                ca_file: Some(ca_file),
                ..Default::default()
            },
        );
        let registries = Registries::new(hosts, None, Duration::from_secs(5));
        let endpoint = registries.endpoints("registry.test").pop().unwrap();

        let Err(err) = registries.client(&endpoint) else {
            panic!("a CA file that holds no certificate cannot make a client");
        };

        let message = err.to_string();
        assert!(message.contains("registry.test"), "{message}");
        assert!(message.contains("ca_file"), "{message}");
    }

    #[test]
    fn docker_hub_aliases_match() {
        assert!(same_host("https://index.docker.io/v1/", "docker.io"));
        assert!(same_host("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!same_host("127.0.0.1:5001", "127.0.0.1:5000"));
    }

    #[test]
    fn mirrors_come_before_upstream() {
        let mut hosts = RegistryHosts::new();
        hosts.insert(
            "docker.io".into(),
            RegistryHost {
                mirrors: vec!["127.0.0.1:5000".into(), "127.0.0.1:5001".into()],
                ..RegistryHost::default()
            },
        );
        let registries = Registries::new(hosts, None, Duration::from_secs(1));
        let hosts: Vec<(String, bool)> = registries
            .endpoints("docker.io")
            .into_iter()
            .map(|e| (e.host, e.mirror))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("127.0.0.1:5000".into(), true),
                ("127.0.0.1:5001".into(), true),
                ("docker.io".into(), false)
            ]
        );
    }
}
