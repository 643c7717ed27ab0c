//! weir-reactor.
