//! What a server says it supports (FEAT, RFC 2389), parsed leniently.
//!
//! FEAT lines start with one or more spaces (sometimes none); feature names are case-insensitive.
//! A server without FEAT (500/502) simply has no features, and we fall back to the RFC 959 basics.

use crate::checksum::Algorithm;

/// The features this client cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// MLST/MLSD are available; holds the facts the server offers (lower-case, without `*`).
    pub mlst: Option<Vec<String>>,
    pub epsv: bool,
    pub utf8: bool,
    pub mfmt: bool,
    pub size: bool,
    pub mdtm: bool,
    pub rest_stream: bool,
    /// AUTH mechanisms offered (for example `TLS`).
    pub auth: Vec<String>,
    /// SITE subcommands the server listed, when it did (upper-case).
    pub site: Vec<String>,
    /// Algorithms of the HASH command (draft-bryan-ftpext-hash), as FEAT lists them.
    pub hash: Vec<Algorithm>,
    /// Algorithms with a command of their own (XCRC, XMD5, XSHA1, XSHA256, XSHA512).
    pub x_hash: Vec<Algorithm>,
    /// Every raw feature line, trimmed, for `--probe` style reports.
    pub raw: Vec<String>,
}

/// An algorithm by its HASH name (`SHA-256`, as the IANA registry of hash names spells it).
pub fn hash_algorithm(name: &str) -> Option<Algorithm> {
    Algorithm::ALL.into_iter().find(|a| hash_name(*a).eq_ignore_ascii_case(name))
}

/// The HASH name of an algorithm.
pub fn hash_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Crc32 => "CRC32",
        Algorithm::Md5 => "MD5",
        Algorithm::Sha1 => "SHA-1",
        Algorithm::Sha256 => "SHA-256",
        Algorithm::Sha512 => "SHA-512",
    }
}

impl Features {
    /// The algorithms the server computes a file's digest with, by HASH or a command of its own.
    pub fn checksums(&self) -> Vec<Algorithm> {
        Algorithm::ALL.into_iter().filter(|a| self.hash.contains(a) || self.x_hash.contains(a)).collect()
    }

    /// Parses the lines of a 211 FEAT reply (as returned by `Reply::lines`).
    pub fn parse(lines: &[String]) -> Features {
        let mut f = Features::default();
        // The first and last lines are the reply's framing ("Features:", "End").
        let body = if lines.len() >= 2 { &lines[1..lines.len() - 1] } else { &[][..] };
        for line in body {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            f.raw.push(line.to_string());
            let (name, args) = match line.split_once(char::is_whitespace) {
                Some((n, a)) => (n, a.trim()),
                None => (line, ""),
            };
            match name.to_ascii_uppercase().as_str() {
                "MLST" | "MLSD" => {
                    let facts = args
                        .split(';')
                        .map(|s| s.trim().trim_end_matches('*').to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect();
                    f.mlst = Some(facts);
                }
                "EPSV" => f.epsv = true,
                "UTF8" => f.utf8 = true,
                "MFMT" => f.mfmt = true,
                "SIZE" => f.size = true,
                "MDTM" => f.mdtm = true,
                "REST" => f.rest_stream = args.to_ascii_uppercase().contains("STREAM"),
                "AUTH" => {
                    f.auth.extend(args.split([';', ' ', ',']).filter(|s| !s.is_empty()).map(|s| s.to_ascii_uppercase()))
                }
                "HASH" => f.hash.extend(args.split(';').filter_map(|a| hash_algorithm(a.trim().trim_end_matches('*')))),
                "XCRC" => f.x_hash.push(Algorithm::Crc32),
                "XMD5" => f.x_hash.push(Algorithm::Md5),
                "XSHA1" => f.x_hash.push(Algorithm::Sha1),
                "XSHA256" => f.x_hash.push(Algorithm::Sha256),
                "XSHA512" => f.x_hash.push(Algorithm::Sha512),
                "SITE" => {
                    f.site.extend(args.split([';', ' ', ',']).filter(|s| !s.is_empty()).map(|s| s.to_ascii_uppercase()))
                }
                _ => {}
            }
        }
        f
    }

    /// True when the server offers `AUTH TLS` (or the older `AUTH SSL`).
    pub fn auth_tls(&self) -> bool {
        self.auth.iter().any(|a| a == "TLS" || a == "SSL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn vsftpd_feat() {
        let f =
            Features::parse(&lines("Features:\n EPRT\n EPSV\n MDTM\n PASV\n REST STREAM\n SIZE\n TVFS\n UTF8\nEnd"));
        assert!(f.epsv && f.mdtm && f.size && f.rest_stream && f.utf8);
        assert!(f.mlst.is_none());
        assert!(!f.mfmt);
    }

    #[test]
    fn pyftpdlib_feat() {
        let f = Features::parse(&lines(
            "Features supported:\n EPRT\n EPSV\n MDTM\n MFMT\n MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;\n REST STREAM\n SIZE\n TVFS\n UTF8\nEnd FEAT.",
        ));
        assert!(f.mfmt);
        let facts = f.mlst.unwrap();
        assert!(facts.contains(&"type".to_string()));
        assert!(facts.contains(&"unix.mode".to_string()));
    }

    #[test]
    fn proftpd_digests() {
        // proftpd with mod_digest (the harness's).
        let f = Features::parse(&lines(
            "Features:\n HASH CRC32;MD5;SHA-1*;SHA-256;SHA-512;\n MD5\n XCRC\n XMD5\n XSHA\n XSHA1\n XSHA256\n XSHA512\nEnd",
        ));
        use crate::checksum::Algorithm::*;
        assert_eq!(f.hash, [Crc32, Md5, Sha1, Sha256, Sha512]);
        assert_eq!(f.x_hash, [Crc32, Md5, Sha1, Sha256, Sha512]);
        let only_hash = Features::parse(&lines("Features:\n HASH SHA-256*;MD5;SHA-3\nEnd"));
        assert_eq!(only_hash.checksums(), [Md5, Sha256], "an unknown algorithm is skipped");
        assert!(Features::parse(&lines("Features:\n SIZE\nEnd")).checksums().is_empty());
    }

    #[test]
    fn odd_spacing_and_case() {
        let f = Features::parse(&lines("Features:\nepsv\n   mlst Type*;Size*;\n AUTH TLS\n\nEnd"));
        assert!(f.epsv);
        assert_eq!(f.mlst.as_deref(), Some(&["type".to_string(), "size".to_string()][..]));
        assert!(f.auth_tls());
    }

    #[test]
    fn empty() {
        assert_eq!(Features::parse(&[]), Features::default());
    }
}
