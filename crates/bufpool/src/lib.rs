//! weir-bufpool.
