//! weir-net.
