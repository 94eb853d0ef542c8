//! Reload in place (`SIGHUP`, `etherws ctl reload`, JSON-RPC `reload`): the configuration
//! file and every file it and the options name are read and checked again, as
//! `--check-config` does, and only if all is well the difference is applied — new TLS
//! configurations for new handshakes, htpasswd files, WebSocket paths and pinned users (their
//! clients' ports re-configured, or closed when no longer admitted), and `[[port]]`s created,
//! re-configured or deleted. Connections whose settings did not change are not touched.
//!
//! What cannot change without rebinding or rebuilding the switch (addresses, ports, threads,
//! limits of the switch core…) refuses the reload with the option's name, changing nothing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::ArgMatches;

use crate::app::cli::{EffectiveOptions, SwOptions};
use crate::app::config::{Config, PortConf};
use crate::app::sw_command::{self, Settings};
use crate::base::escape::Esc;
use crate::control::Control;
use crate::edge::auth::Auth;
use crate::edge::live::{LiveWs, Session, TlsCell, Users, WsPath};
use crate::port::lock;
use crate::switch::fdb::PortNo;

/// What a reload needs: how the switch was started, what it runs with now, and the cells the
/// listeners read.
pub(crate) struct Reloader {
    /// The configuration file (absolute), if the switch was started with one.
    pub(crate) config: Option<PathBuf>,
    pub(crate) options: SwOptions,
    pub(crate) matches: Option<ArgMatches>,
    /// The options in force.
    pub(crate) opts: EffectiveOptions,
    /// The `[[port]]`s in force, each with its port number (`None`: it could not be created).
    pub(crate) ports: Vec<(PortConf, Option<PortNo>)>,
    pub(crate) live: Arc<LiveWs>,
    pub(crate) ws_auth: Arc<Auth>,
    pub(crate) ctl_auth: Arc<Auth>,
    pub(crate) ws_tls: Option<TlsCell>,
    /// `None` on a listener shared with the WebSocket side, or without TLS.
    pub(crate) ctl_tls: Option<TlsCell>,
    pub(crate) control: Control,
}

/// Everything read again, and checked.
struct Next {
    opts: EffectiveOptions,
    settings: Settings,
    config: Option<Config>,
    /// The WebSocket listener's new check of client certificates, if it asks for them.
    verifier: Option<Verifier>,
}

type Verifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

impl Reloader {
    /// Reloads; the answer is the one-line summary of what changed, or why nothing did. Both
    /// are logged.
    pub(crate) async fn reload(&mut self) -> Result<String, String> {
        let outcome = match self.read().await {
            Ok(next) => match restart_needed(&self.opts, &next.opts) {
                Some(why) => Err(why),
                None => Ok(self.apply(next).await),
            },
            Err(e) => Err(format!("{e:#}")),
        };
        match &outcome {
            Ok(summary) => tracing::info!("reloaded: {}", Esc(summary)),
            Err(why) => tracing::error!("reload refused, nothing changed: {}", Esc(why)),
        }
        outcome
    }

    /// Reads and checks the files as `--check-config` does, off the runtime (files, PEM).
    async fn read(&self) -> anyhow::Result<Next> {
        let (path, options, matches) = (
            self.config.clone(),
            self.options.clone(),
            self.matches.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let (config, opts) = sw_command::read_checked(path.as_deref(), options, &matches)?;
            let settings = sw_command::settings(&opts)?;
            sw_command::check_users(config.as_ref(), &settings)?;
            let verifier = settings
                .client_auth
                .as_ref()
                .map(crate::base::tls::client_verifier)
                .transpose()?;
            Ok(Next {
                opts,
                settings,
                config: config.map(|(_, c)| c),
                verifier,
            })
        })
        .await
        .context("the reload's reading task failed")?
    }

    /// Applies what was read; returns the summary.
    async fn apply(&mut self, next: Next) -> String {
        let mut said = Vec::new();
        self.apply_tls(&next.settings, &mut said);
        self.ws_auth.set_htpasswd(next.settings.htpasswd.clone());
        self.ctl_auth
            .set_htpasswd(next.settings.ctlhtpasswd.clone());
        let conf = next.config.unwrap_or_default();
        let users = conf.users.clone();
        self.apply_paths(&next.settings, users, next.verifier.as_deref(), &mut said);
        self.apply_ports(conf.ports, &mut said).await;
        self.apply_limits(next.settings.limits, &mut said);
        self.opts = next.opts;
        if said.is_empty() {
            "nothing changed".into()
        } else {
            said.join("; ")
        }
    }

    /// The switch's limits (frame size, MAC limits, storm control, loop guard) take the new
    /// values for every frame from now on.
    fn apply_limits(&self, limits: crate::switch::Limits, said: &mut Vec<String>) {
        let mut sw = crate::port::lock(&self.control.switch);
        if sw.limits() != limits {
            sw.set_limits(limits);
            said.push("limits".into());
        }
    }

    /// New handshakes take the certificates, keys, client CAs and CRLs read again.
    fn apply_tls(&self, s: &Settings, said: &mut Vec<String>) {
        let pairs = [(&self.ws_tls, &s.tls), (&self.ctl_tls, &s.ctltls)];
        let mut n = 0;
        for (cell, config) in pairs {
            if let (Some(cell), Some(config)) = (cell, config) {
                cell.store(config.clone());
                n += 1;
            }
        }
        if n > 0 {
            said.push("TLS certificates read again".into());
        }
    }

    /// The new paths and pins in force for new clients; the clients in course re-configured,
    /// or closed when their path went or their credentials no longer admit them.
    fn apply_paths(
        &self,
        s: &Settings,
        users: Users,
        verifier: Option<&dyn rustls::server::danger::ClientCertVerifier>,
        said: &mut Vec<String>,
    ) {
        let (old_paths, old_users) = (self.live.paths.load(), self.live.users.load());
        said.extend(path_changes(&old_paths, &s.paths));
        self.live.paths.store(Arc::new(s.paths.clone()));
        self.live.users.store(Arc::new(users));
        // Paths, users and htpasswd files stored: a connection admitted before and not in the
        // snapshot below checks itself once registered (and connects again).
        self.live.reloaded();
        let users = self.live.users.load();
        let (mut changed, mut closed) = (0, 0);
        for (port, session) in self.live.sessions.snapshot() {
            let Some(path) = s.paths.iter().find(|p| p.path == session.path) else {
                self.close(port, &session, "its path is no longer served");
                closed += 1;
                continue;
            };
            if let Some(why) = self.refused(&session, path, verifier) {
                self.close(port, &session, &why);
                closed += 1;
                continue;
            }
            let old = old_paths.iter().find(|p| p.path == session.path);
            let (old, new) = (
                old.map(|p| session.profile(p, &old_users)),
                session.profile(path, &users),
            );
            if old.as_ref() != Some(&new) && self.reconfigure(port, &new) {
                changed += 1;
            }
        }
        if changed > 0 {
            said.push(format!("{changed} session(s) re-configured"));
        }
        if closed > 0 {
            said.push(format!("{closed} session(s) closed"));
        }
    }

    /// Why the files read again no longer admit a session: its user is not in the htpasswd
    /// file that would authenticate it now, or its certificate is revoked.
    fn refused(
        &self,
        session: &Session,
        path: &WsPath,
        verifier: Option<&dyn rustls::server::danger::ClientCertVerifier>,
    ) -> Option<String> {
        use crate::settings::profile::Credentials;
        let file = path.htpasswd.clone().or(self.ws_auth.htpasswd());
        let password_user = session
            .user
            .as_ref()
            .filter(|_| session.from != Credentials::Certificate);
        match (&file, password_user) {
            (Some(file), Some(user)) if !file.has_user(user) => {
                return Some(format!(
                    "user {} is no longer in {}",
                    Esc(user),
                    file.path().display()
                ));
            }
            (Some(file), None) => {
                return Some(format!(
                    "its path now asks for a password ({}), and it gave none",
                    file.path().display()
                ));
            }
            _ => {}
        }
        let verifier = verifier?;
        let Some(certs) = session.certs.as_ref() else {
            return Some("a client certificate is now required, and it gave none".into());
        };
        crate::base::tls::refused_now(verifier, certs).map(str::to_string)
    }

    /// Closes a session's port (its peer gets a close frame), saying why.
    fn close(&self, port: PortNo, session: &Session, why: &str) {
        let user = session.user.as_deref().unwrap_or("-");
        tracing::warn!(port, user = %Esc(user), path = %Esc(&session.path), "session closed by reload: {why}");
        lock(&self.control.switch).remove_port(port);
    }

    /// Gives a port its path's (or pin's) new settings; the mirror set by hand stays.
    fn reconfigure(&self, port: PortNo, profile: &crate::settings::profile::Profile) -> bool {
        let mut sw = lock(&self.control.switch);
        let Some(stat) = sw.port(port) else {
            return false;
        };
        let mut policy = profile.policy();
        policy.mirror = stat.policy.mirror;
        match sw.set_policy(port, policy) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(port, "reload: new settings not applied: {e}");
                false
            }
        }
    }

    /// `[[port]]`s matched by type and target: removed ones deleted, new ones created, changed
    /// ones re-configured (settings, interface) or re-created (anything else).
    async fn apply_ports(&mut self, new: Vec<PortConf>, said: &mut Vec<String>) {
        let mut old = std::mem::take(&mut self.ports);
        let mut kept = Vec::new();
        let mut created = Vec::new();
        for conf in new {
            let same = old.iter().position(|(o, _)| identity(o) == identity(&conf));
            let Some(at) = same else {
                created.push(conf);
                continue;
            };
            let (was, no) = old.remove(at);
            if no.is_none() {
                // It could not be created last time: try again.
                created.push(conf);
            } else if same_but_line(&was, &conf) {
                kept.push((conf, no));
            } else if let Some(no) = no.filter(|_| reconfigurable(&was, &conf)) {
                said.push(format!("port {no} ({}) re-configured", identity(&conf).1));
                self.configure_port(no, &conf).await;
                kept.push((conf, Some(no)));
            } else {
                self.delete_port(no);
                created.push(conf);
            }
        }
        for (conf, no) in old {
            said.push(format!(
                "port {} ({}) deleted",
                port_name(no),
                identity(&conf).1
            ));
            self.delete_port(no);
        }
        for conf in created {
            let name = identity(&conf).1.to_string();
            let no = match self.create_port(&conf).await {
                Ok(no) => {
                    said.push(format!("port {no} ({name}) created"));
                    Some(no)
                }
                Err(why) => {
                    said.push(format!("port ({name}) not created: {why}"));
                    None
                }
            };
            kept.push((conf, no));
        }
        self.ports = kept;
    }

    fn delete_port(&self, no: Option<PortNo>) {
        if let Some(no) = no {
            lock(&self.control.switch).remove_port(no);
        }
    }

    /// Creates a port the file declares; a failure (a device the kernel refuses) is logged
    /// and said in the summary, and the port tried again at the next reload.
    async fn create_port(&self, conf: &PortConf) -> Result<PortNo, String> {
        let what = format!("reload: port ({})", identity(conf).1);
        sw_command::create_one(&self.control, conf, &what)
            .await
            .map_err(|e| {
                tracing::error!("{what}: {e:#}");
                format!("{e:#}")
            })
    }

    /// A TAP or netdev port's new interface settings and settings, in place.
    async fn configure_port(&self, no: PortNo, conf: &PortConf) {
        let what = format!("reload: port {no}");
        if let Err(e) = sw_command::configure_one(&self.control, no, conf, &what).await {
            tracing::error!("{what}: {e:#}");
        }
    }
}

fn port_name(no: Option<PortNo>) -> String {
    no.map_or_else(|| "-".into(), |n| n.to_string())
}

/// What a `[[port]]` is: its type and target, as `listPort` shows them.
fn identity(p: &PortConf) -> (&'static str, &str) {
    match p {
        PortConf::Tap { name, .. } => ("tap", name),
        PortConf::Netdev { name, .. } => ("netdev", name),
        PortConf::Client { url, .. } => ("client", url),
    }
}

/// The port with its table's line left out (moving a table in the file changes nothing).
fn without_line(p: &PortConf) -> PortConf {
    let mut p = p.clone();
    match &mut p {
        PortConf::Tap { line, .. }
        | PortConf::Netdev { line, .. }
        | PortConf::Client { line, .. } => *line = 0,
    }
    p
}

fn same_but_line(a: &PortConf, b: &PortConf) -> bool {
    without_line(a) == without_line(b)
}

/// A change of settings or interface only (not of a client's credentials, nor of offload):
/// done in place, keeping the port and its number.
fn reconfigurable(was: &PortConf, now: &PortConf) -> bool {
    match (was, now) {
        (PortConf::Tap { .. }, PortConf::Tap { .. }) => true,
        (PortConf::Netdev { offload: a, .. }, PortConf::Netdev { offload: b, .. }) => a == b,
        (PortConf::Client { .. }, PortConf::Client { .. }) => {
            let mut was = without_line(was);
            if let (PortConf::Client { profile: a, .. }, PortConf::Client { profile: b, .. }) =
                (&mut was, now)
            {
                *a = b.clone();
            }
            was == without_line(now)
        }
        _ => false,
    }
}

/// `+/lab2`, `~/lab1`, `-/old`: the paths added, changed and removed.
fn path_changes(old: &[WsPath], new: &[WsPath]) -> Option<String> {
    let mut out = Vec::new();
    for p in new {
        match old.iter().find(|o| o.path == p.path) {
            None => out.push(format!("+{}", p.path)),
            Some(o) if o.profile != p.profile || htpasswd_of(o) != htpasswd_of(p) => {
                out.push(format!("~{}", p.path))
            }
            Some(_) => {}
        }
    }
    out.extend(
        old.iter()
            .filter(|o| !new.iter().any(|p| p.path == o.path))
            .map(|o| format!("-{}", o.path)),
    );
    (!out.is_empty()).then(|| format!("paths {}", out.join(" ")))
}

fn htpasswd_of(p: &WsPath) -> Option<PathBuf> {
    p.htpasswd.as_ref().map(|h| h.path().to_path_buf())
}

/// Why `new` needs a restart: the first option that changed among those only a start sets.
/// The options a reload applies are left out of the comparison.
fn restart_needed(old: &EffectiveOptions, new: &EffectiveOptions) -> Option<String> {
    if old.sslkey.is_some() != new.sslkey.is_some() {
        return Some("--sslkey/--sslcert added or removed (TLS on or off): needs a restart".into());
    }
    if old.ctlsslkey.is_some() != new.ctlsslkey.is_some() {
        return Some("--ctlsslkey/--ctlsslcert added or removed: needs a restart".into());
    }
    if old.ctlhtpasswd.is_some() != new.ctlhtpasswd.is_some() {
        return Some("--ctlhtpasswd added or removed: needs a restart".into());
    }
    let mut fixed = new.clone();
    fixed.sslkey = old.sslkey.clone();
    fixed.sslcert = old.sslcert.clone();
    fixed.sslclientca = old.sslclientca.clone();
    fixed.sslcrl = old.sslcrl.clone();
    fixed.ctlsslkey = old.ctlsslkey.clone();
    fixed.ctlsslcert = old.ctlsslcert.clone();
    fixed.ctlsslclientca = old.ctlsslclientca.clone();
    fixed.ctlsslcrl = old.ctlsslcrl.clone();
    fixed.htpasswd = old.htpasswd.clone();
    fixed.ctlhtpasswd = old.ctlhtpasswd.clone();
    fixed.path = old.path.clone();
    fixed.rate_in = old.rate_in;
    fixed.rate_out = old.rate_out;
    // The switch's limits, applied live.
    fixed.max_frame = old.max_frame;
    fixed.max_macs = old.max_macs;
    fixed.max_macs_per_port = old.max_macs_per_port;
    fixed.max_macs_per_addr = old.max_macs_per_addr;
    fixed.loop_moves = old.loop_moves;
    fixed.loop_block = old.loop_block;
    fixed.storm_pps = old.storm_pps;
    if fixed == *old {
        return None;
    }
    let name = changed_option(old, &fixed).unwrap_or("an option");
    Some(format!("--{name} changed: needs a restart"))
}

/// The name of the first option of `old` and `new` that differs, of those a start sets.
fn changed_option(old: &EffectiveOptions, new: &EffectiveOptions) -> Option<&'static str> {
    macro_rules! first_changed {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(if old.$field != new.$field { return Some($name); })*
        };
    }
    first_changed!(
        host => "host", port => "port", quic => "quic", quic_port => "quic-port",
        quic_congestion => "quic-congestion", ctlhost => "ctlhost", ctlport => "ctlport",
        ctlpath => "ctlpath", threads => "threads", pidfile => "pidfile", debug => "debug",
        logconf => "logconf", log_format => "log-format", ageout => "ageout",
        keepalive => "keepalive", reconnect_max => "reconnect-max",
        notsent_lowat => "notsent-lowat", congestion => "congestion", max_frame => "max-frame",
        max_macs => "max-macs", max_macs_per_port => "max-macs-per-port",
        max_macs_per_addr => "max-macs-per-addr", loop_moves => "loop-moves",
        loop_block => "loop-block", storm_pps => "storm-pps", strict_frames => "strict-frames",
        queue_bytes => "queue-bytes", queue_budget => "queue-budget",
        queue_delay => "queue-delay", queue_discipline => "queue-discipline",
        max_conns => "max-conns",
        max_conns_per_addr => "max-conns-per-addr", auth_max_failures => "auth-max-failures",
        auth_window => "auth-window", trusted_proxy => "trusted-proxy",
        proxy_header => "proxy-header", proxy_protocol => "proxy-protocol",
        ctlallowhost => "ctlallowhost", ctl_trusted_proxy => "ctl-trusted-proxy",
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_a_start_sets_refuse_a_reload_by_name() {
        let old = EffectiveOptions::default();
        let mut new = old.clone();
        new.rate_in = Some("10M".parse().unwrap());
        assert_eq!(restart_needed(&old, &new), None);
        new.port = Some(crate::settings::values::Num(8080));
        assert_eq!(
            restart_needed(&old, &new).as_deref(),
            Some("--port changed: needs a restart")
        );
        let mut new = old.clone();
        new.threads = crate::settings::values::Num(3);
        assert_eq!(
            restart_needed(&old, &new).as_deref(),
            Some("--threads changed: needs a restart")
        );
        let mut new = old.clone();
        new.congestion = "reno".parse().unwrap();
        assert_eq!(
            restart_needed(&old, &new).as_deref(),
            Some("--congestion changed: needs a restart")
        );
        let mut new = old.clone();
        new.notsent_lowat = crate::settings::values::Num(0);
        assert_eq!(
            restart_needed(&old, &new).as_deref(),
            Some("--notsent-lowat changed: needs a restart")
        );
    }

    #[test]
    fn a_port_moved_in_the_file_is_the_same_port() {
        let tap = |line, mtu| PortConf::Tap {
            name: "tap0".into(),
            iface: crate::app::config::IfConf {
                mtu,
                ..Default::default()
            },
            profile: Default::default(),
            line,
        };
        assert!(same_but_line(&tap(3, None), &tap(9, None)));
        assert!(!same_but_line(&tap(3, None), &tap(3, Some(1400))));
        assert!(reconfigurable(&tap(3, None), &tap(3, Some(1400))));
    }
}
