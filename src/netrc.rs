//! `~/.netrc` (or `-o netrc=PATH`): the login and password of a host, as curl and ftp(1)
//! read them (`machine`/`login`/`password`, and `default`).

/// Looks up `machine host` (or `default`) in a netrc text; returns (login, password).
pub fn lookup(text: &str, host: &str) -> Option<(Option<String>, Option<String>)> {
    let mut tokens = text.split_whitespace();
    let mut current: Option<bool> = None; // Some(true) inside the wanted machine
    let (mut login, mut password) = (None, None);
    let mut default = None;
    let mut default_entry = (None, None);
    while let Some(t) = tokens.next() {
        match t {
            "machine" => {
                if current == Some(true) {
                    return Some((login, password));
                }
                current = Some(tokens.next() == Some(host));
                default = Some(false);
            }
            "default" => {
                if current == Some(true) {
                    return Some((login, password));
                }
                current = Some(false);
                default = Some(true);
            }
            "login" | "password" | "account" | "macdef" => {
                let v = tokens.next().map(str::to_string);
                let slot = match t {
                    "login" => 0,
                    "password" => 1,
                    _ => 2,
                };
                if current == Some(true) {
                    if slot == 0 {
                        login = v
                    } else if slot == 1 {
                        password = v
                    }
                } else if default == Some(true) {
                    if slot == 0 {
                        default_entry.0 = v
                    } else if slot == 1 {
                        default_entry.1 = v
                    }
                }
            }
            _ => {}
        }
    }
    if current == Some(true) {
        return Some((login, password));
    }
    if default_entry.0.is_some() || default_entry.1.is_some() { Some(default_entry) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc() {
        let text = "machine a.example login alice password pa\nmachine b.example\n login bob\n password pb\ndefault login anon password pd\n";
        assert_eq!(lookup(text, "b.example"), Some((Some("bob".into()), Some("pb".into()))));
        assert_eq!(lookup(text, "a.example"), Some((Some("alice".into()), Some("pa".into()))));
        assert_eq!(lookup(text, "c.example"), Some((Some("anon".into()), Some("pd".into()))));
        assert_eq!(lookup("machine x login y password z", "q"), None);
    }
}
