//! Wire types of the APIs we serve.
pub mod openai;
