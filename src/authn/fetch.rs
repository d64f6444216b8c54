// The one way an HTTP answer from an identity provider (a JWKS, a discovery document, an
// introspection answer) is read: chunk by chunk, refused as soon as it would pass its cap,
// so a huge or endless body costs at most the cap.

/// Why a body was not read whole.
pub(super) enum BodyError {
    /// The connection failed while reading.
    Broken(reqwest::Error),
    /// The body is longer than the cap.
    TooLarge,
}

/// The whole body of `response`, at most `cap` bytes.
pub(super) async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Broken)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
