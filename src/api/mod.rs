//! Wire types of the APIs we serve.
pub mod diagnose;
pub mod openai;
pub mod responses;
