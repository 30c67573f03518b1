//! `SITE SYMLINK target link` (proftpd's mod_site_misc, lftp's `ln -s`): the one way FTP has to
//! make a symbolic link, where the server offers it. Both paths are single words to the server
//! (it splits its argument at white space), so a path with a space or tab cannot be sent.

use super::command::check_arg;
use super::control::Connection;
use super::error::{FtpError, Result};

impl Connection {
    /// Makes `link` a symbolic link to `target` (both as the server takes them).
    pub fn site_symlink(&mut self, target: &str, link: &str) -> Result<()> {
        check_arg(target)?;
        check_arg(link)?;
        let spaced = |p: &str| p.chars().any(char::is_whitespace);
        if spaced(target) || spaced(link) || target.is_empty() {
            return Err(FtpError::InvalidArgument(
                "SITE SYMLINK cannot carry a path with a space (or an empty target)".into(),
            ));
        }
        let arg = format!("SYMLINK {target} {link}");
        self.command_expect("SITE", Some(&arg), |c| c == 200 || c == 250).map(drop)
    }
}
