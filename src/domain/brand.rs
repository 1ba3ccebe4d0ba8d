//! The vendor's brand on the pages a prospect sees (landing, waking, inactive):
//! product name, logo and colour, from configuration, served by showroom itself.

/// A logo file's bytes and type.
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

#[derive(Debug, Clone)]
pub struct Brand {
    /// Shown at the top of every prospect page ("Acme Commerce").
    pub product: String,
    /// `#rrggbb`: buttons, links, the spinner.
    pub color: String,
    pub logo: Option<Logo>,
}

impl Default for Brand {
    fn default() -> Self {
        Brand {
            product: String::new(),
            color: "#3b5bdb".into(),
            logo: None,
        }
    }
}

/// A brand setting that cannot be used, naming the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct BrandError {
    pub setting: String,
    pub message: String,
}

/// The largest logo served (it is held in memory and sent on every prospect page).
pub const MAX_LOGO_BYTES: usize = 256 * 1024;

impl Brand {
    /// `logo` is (file name, bytes); its type comes from the name and is checked
    /// against the bytes.
    pub fn new(
        product: Option<&str>,
        color: Option<&str>,
        logo: Option<(&str, Vec<u8>)>,
    ) -> Result<Brand, BrandError> {
        let err = |setting: &str, message: String| BrandError {
            setting: setting.into(),
            message,
        };
        let mut b = Brand::default();
        if let Some(p) = product.map(str::trim) {
            if p.chars().count() > 60 || p.chars().any(char::is_control) {
                return Err(err(
                    "brand name",
                    "at most 60 characters, no control characters".into(),
                ));
            }
            b.product = p.to_string();
        }
        if let Some(c) = color.map(str::trim) {
            let hex = c.strip_prefix('#').unwrap_or("");
            if hex.len() != 6 || !hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
                return Err(err(
                    "brand color",
                    format!("{c:?} must be a colour such as #0a7d5a"),
                ));
            }
            b.color = c.to_ascii_lowercase();
        }
        if let Some((file, bytes)) = logo {
            let ext = file.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            let (content_type, looks_right) = match ext.as_str() {
                "png" => ("image/png", bytes.starts_with(b"\x89PNG\r\n\x1a\n")),
                "jpg" | "jpeg" => ("image/jpeg", bytes.starts_with(&[0xff, 0xd8])),
                "svg" => (
                    "image/svg+xml",
                    std::str::from_utf8(&bytes).is_ok_and(|t| t.contains("<svg")),
                ),
                _ => {
                    return Err(err(
                        "brand logo",
                        format!("{file}: must be a .png, .jpg or .svg file"),
                    ));
                }
            };
            if !looks_right {
                return Err(err(
                    "brand logo",
                    format!("{file}: is not a {content_type} image"),
                ));
            }
            if bytes.len() > MAX_LOGO_BYTES {
                return Err(err(
                    "brand logo",
                    format!("{file}: {} bytes, at most {MAX_LOGO_BYTES}", bytes.len()),
                ));
            }
            b.logo = Some(Logo {
                bytes,
                content_type,
            });
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brand_is_checked_setting_by_setting() {
        let b = Brand::new(Some("Acme Commerce"), Some("#0A7D5A"), None).unwrap();
        assert_eq!(
            (b.product.as_str(), b.color.as_str()),
            ("Acme Commerce", "#0a7d5a")
        );
        let e = Brand::new(None, Some("red; background: url(x)"), None).unwrap_err();
        assert_eq!(e.setting, "brand color");
        let e = Brand::new(None, None, Some(("logo.gif", b"GIF89a".to_vec()))).unwrap_err();
        assert!(e.message.contains("logo.gif"), "{e}");
        let e = Brand::new(None, None, Some(("logo.png", b"<svg/>".to_vec()))).unwrap_err();
        assert!(e.message.contains("not a image/png"), "{e}");
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec();
        let b = Brand::new(None, None, Some(("logo.svg", svg))).unwrap();
        assert_eq!(b.logo.unwrap().content_type, "image/svg+xml");
    }
}
