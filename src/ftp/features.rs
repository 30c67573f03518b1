//! What a server says it supports (FEAT, RFC 2389), parsed leniently.
//!
//! FEAT lines start with one or more spaces (sometimes none); feature names are case-insensitive.
//! A server without FEAT (500/502) simply has no features, and we fall back to the RFC 959 basics.

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
    /// Every raw feature line, trimmed, for `--probe` style reports.
    pub raw: Vec<String>,
}

impl Features {
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
