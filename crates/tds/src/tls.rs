//! TLS setup helpers.
