//! The master's side of TLS: it reads the certificate files
//! (`handoff::tls`) at start and again on HUP, and builds the configuration
//! once to check them, so a bad file stops the start with one line naming
//! it (or, on HUP, keeps the current material). The workers get the bytes
//! in their handoff and build the same configuration from them.

use crate::config::Settings;
use crate::handoff::tls::{server_config, TlsError, TlsMaterial};

/// The TLS material the settings ask for, checked: `None` without
/// `--certfile` (plain HTTP).
pub fn load(settings: &Settings) -> Result<Option<TlsMaterial>, TlsError> {
    let Some(material) = TlsMaterial::read(settings)? else {
        return Ok(None);
    };
    server_config(settings, &material)?;
    Ok(Some(material))
}

/// HUP: the material for the new workers. A file that no longer loads
/// keeps `current`, with the error logged; adding or removing
/// `--certfile` needs a restart (the sockets stay as they are).
pub fn reload(settings: &Settings, current: &Option<TlsMaterial>) -> Option<TlsMaterial> {
    if settings.certfile.is_none() != current.is_none() {
        log::warn!("--certfile added or removed; it applies only after a restart");
        return current.clone();
    }
    match load(settings) {
        // With a new ticket secret: a client of the old workers makes a
        // full handshake with the new ones, and sees the new certificate.
        Ok(material) => {
            if material.is_some() {
                log::info!("TLS certificates reloaded");
            }
            material
        }
        Err(e) => {
            log::error!("Cannot reload the TLS certificates, keeping the current ones: {e}");
            current.clone()
        }
    }
}
