//! The subject Common Name of an X.509 certificate (for `use_identity_as_username`).
//!
//! Only called on a certificate rustls has already verified, but written as if the bytes were
//! hostile: a checked DER reader over `&[u8]`, no recursion, no allocation but the answer, no
//! panic on any input (a test feeds it every truncation). Anything unexpected gives `None`.
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER,
//!                  signature AlgorithmIdentifier (SEQUENCE), issuer Name, validity SEQUENCE,
//!                  subject Name, ... }
//! Name ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }   (RFC 5280 §4.1)
//! ```

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0; // [0] EXPLICIT, constructed
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const TELETEX_STRING: u8 = 0x14;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// A DER reader over a byte slice: each step checks the length before slicing.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag and contents.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // Long form: 1 to 4 length bytes (a certificate is far below 4 GB).
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        self.rest = rest;
        Some((tag, contents))
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }
}

/// The first Common Name in the certificate's subject, if it is a string.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let cert = Der::new(certificate).expect(SEQUENCE)?;
    let mut tbs = Der::new(Der::new(cert).expect(SEQUENCE)?);
    let mut first = tbs.next()?;
    if first.0 == VERSION {
        first = tbs.next()?;
    }
    if first.0 != INTEGER {
        return None;
    }
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let mut subject = Der::new(tbs.expect(SEQUENCE)?);
    while !subject.is_empty() {
        let mut set = Der::new(subject.expect(SET)?);
        while !set.is_empty() {
            let mut attribute = Der::new(set.expect(SEQUENCE)?);
            if attribute.expect(OID)? != COMMON_NAME {
                continue;
            }
            let (tag, value) = attribute.next()?;
            return match tag {
                UTF8_STRING | PRINTABLE_STRING | IA5_STRING | TELETEX_STRING => {
                    std::str::from_utf8(value).ok().map(str::to_string)
                }
                _ => None,
            };
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made at test time with subject `C=DE, O=edgemq, CN=<cn>`.
    fn certificate(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "DE");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "edgemq");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn finds_the_common_name_among_other_attributes() {
        assert_eq!(common_name(&certificate("sensor-17")).as_deref(), Some("sensor-17"));
        assert_eq!(common_name(&certificate("Zähler ü")).as_deref(), Some("Zähler ü"));
    }

    #[test]
    fn no_common_name_is_none() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "edgemq");
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(common_name(&der), None);
    }

    #[test]
    fn every_truncation_and_garbage_is_none_without_panic() {
        let der = certificate("sensor-17");
        for len in 0..der.len() {
            assert_eq!(common_name(&der[..len]), None, "truncated to {len}");
        }
        // Lengths that claim more than there is, and a long form of 5 bytes.
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(common_name(&[0x30, 0x85, 0, 0, 0, 0, 1, 0]), None);
        assert_eq!(common_name(&[0x30, 0x80]), None);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut bytes = der.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            let _ = common_name(&bytes);
        }
    }
}
