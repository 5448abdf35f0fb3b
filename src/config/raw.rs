//! STUB — strict serde types.
