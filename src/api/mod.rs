//! Wire types of the APIs we serve, and decoding request bodies without amplification.
pub mod diagnose;
pub mod openai;
pub mod responses;
