//! Wire types of the APIs we serve.
pub mod decode;
pub mod diagnose;
pub mod openai;
