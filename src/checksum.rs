//! The hash algorithms servers compute for us (HASH, XSHA256, …): their names as the wire, the
//! extended attributes (`user.ftpfs.sha256`) and the local hashing know them. A leaf: it imports
//! nothing of the project, so the wire and the model can both name an algorithm.

/// A hash a server may compute over a whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Crc32,
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] =
        [Algorithm::Crc32, Algorithm::Md5, Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512];

    /// The lower-case short name: `sha256`, also the end of its extended attribute's name.
    pub fn short_name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32",
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Hex digits of a digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Crc32 => 8,
            Algorithm::Md5 => 32,
            Algorithm::Sha1 => 40,
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The extended attribute that shows the server's digest of a file: `user.ftpfs.sha256`.
    pub fn xattr_name(self) -> String {
        format!("{XATTR_PREFIX}{}", self.short_name())
    }

    /// The algorithm an extended attribute's name asks for.
    pub fn of_xattr(name: &str) -> Option<Algorithm> {
        let short = name.strip_prefix(XATTR_PREFIX)?;
        Algorithm::ALL.into_iter().find(|a| a.short_name() == short)
    }

    /// The algorithms we can also compute locally (to check an upload against the server's).
    pub fn local(self) -> Option<&'static ring::digest::Algorithm> {
        match self {
            Algorithm::Sha1 => Some(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
            Algorithm::Sha256 => Some(&ring::digest::SHA256),
            Algorithm::Sha512 => Some(&ring::digest::SHA512),
            Algorithm::Crc32 | Algorithm::Md5 => None,
        }
    }
}

/// The prefix of the extended attributes that show server digests.
pub const XATTR_PREFIX: &str = "user.ftpfs.";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::of_xattr(&a.xattr_name()), Some(a));
        }
        assert_eq!(Algorithm::of_xattr("user.ftpfs.sha3"), None);
        assert_eq!(Algorithm::of_xattr("security.selinux"), None);
    }
}
