//! Protocol helpers over ruma: signing keys, PDU ids and verification.

pub mod canonical_de;
pub mod forge;
pub mod keys;
pub mod pdu;
pub mod signer;
pub mod state;

/// Unpadded standard base64 as Matrix uses it; decoding also accepts padding.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{
        general_purpose::GeneralPurposeConfig, DecodePaddingMode, GeneralPurpose,
    };
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(s.trim())
}

/// Unpadded standard base64 encoding.
pub fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}
