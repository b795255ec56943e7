//! The wire protocol: fleet CA, join tokens, mutual-TLS QUIC endpoints and message framing.
