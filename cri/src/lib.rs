//! Berth's CRI services as a library: the image store and puller, the metadata store, and the
//! gRPC server that exposes them as the Kubernetes CRI v1 `RuntimeService` and `ImageService`.

pub mod cgroups;
pub mod config;
pub mod gc;
pub mod image;
pub mod network;
pub mod runtime;
pub mod server;
pub mod store;
pub mod stream;

/// Installs ring as the process-wide rustls crypto provider. Call once at start, before any
/// TLS client is built: a second provider in one process makes rustls users panic later.
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    // ring rather than aws-lc-rs keeps the build free of a large C library. rustls 0.23.48
    // deprecates ring's provider only because it lacks post-quantum key exchange, which
    // registry pulls do not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let _ = provider.install_default();
}
