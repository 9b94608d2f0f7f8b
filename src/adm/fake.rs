//! A test-only in-memory [`Ipvs`]: services in creation order, destinations
//! newest first (spec §1.1), kernel errors for duplicates and missing
//! entries (spec §4.12), and direct access so tests can set counters.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use super::api::{ConnSnapshot, DestSnapshot, Ipvs, IpvsError, ServiceSnapshot, Timeouts};
use crate::service::{DestSpec, ServiceSpec, SvcId};
use crate::stats::StatsSnapshot;

/// Schedulers the fake knows (an unknown one is ENOENT, as in the kernel).
const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// The in-memory director.
#[derive(Debug, Default)]
pub struct FakeIpvs {
    /// Services in creation order, each with dests newest first.
    pub services: RefCell<Vec<ServiceSnapshot>>,
    /// Connection entries returned by `conns()`.
    pub conns: RefCell<Vec<ConnSnapshot>>,
    /// Current timeouts (`None` = defaults).
    pub timeouts: Cell<Option<Timeouts>>,
    /// Warning returned by `dest_warning`.
    pub warning: RefCell<Option<String>>,
}

impl FakeIpvs {
    /// Mutate the service `id` (panics if missing: test helper).
    pub fn with_service(&self, id: &SvcId, f: impl FnOnce(&mut ServiceSnapshot)) {
        let mut v = self.services.borrow_mut();
        let s = v.iter_mut().find(|s| s.spec.id == *id).expect("service");
        f(s);
    }

    /// Mutate the destination `addr:port` of service `id` (panics if missing).
    pub fn with_dest(&self, id: &SvcId, addr: &str, port: u16, f: impl FnOnce(&mut DestSnapshot)) {
        let addr: IpAddr = addr.parse().expect("address");
        self.with_service(id, |s| {
            let d = s
                .dests
                .iter_mut()
                .find(|d| d.spec.addr == addr && d.spec.port == port)
                .expect("dest");
            f(d);
        });
    }

    fn check_spec(s: &ServiceSpec) -> Result<(), IpvsError> {
        if !SCHEDULERS.contains(&s.sched.as_str()) {
            return Err(IpvsError::NotFound);
        }
        if s.pe.as_deref().is_some_and(|p| p != "sip") {
            return Err(IpvsError::NotFound);
        }
        Ok(())
    }
}

fn check_dest(d: &DestSpec) -> Result<(), IpvsError> {
    // ip_vs_check_dest: l_threshold above u_threshold is ERANGE (spec §3.18).
    if d.l_threshold > d.u_threshold {
        return Err(IpvsError::Range);
    }
    Ok(())
}

impl Ipvs for FakeIpvs {
    fn add_service(&self, s: &ServiceSpec) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        if v.iter().any(|x| x.spec.id == s.id) {
            return Err(IpvsError::Exists);
        }
        Self::check_spec(s)?;
        v.push(ServiceSnapshot {
            spec: s.clone(),
            stats: StatsSnapshot::default(),
            dests: Vec::new(),
        });
        Ok(())
    }

    fn edit_service(&self, s: &ServiceSpec) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        let x = v
            .iter_mut()
            .find(|x| x.spec.id == s.id)
            .ok_or(IpvsError::NoService)?;
        Self::check_spec(s)?;
        x.spec = s.clone();
        Ok(())
    }

    fn del_service(&self, id: &SvcId) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        let i = v
            .iter()
            .position(|x| x.spec.id == *id)
            .ok_or(IpvsError::NoService)?;
        v.remove(i);
        Ok(())
    }

    fn flush(&self) -> Result<(), IpvsError> {
        self.services.borrow_mut().clear();
        Ok(())
    }

    fn add_dest(&self, svc: &SvcId, d: &DestSpec) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        let s = v
            .iter_mut()
            .find(|x| x.spec.id == *svc)
            .ok_or(IpvsError::NoService)?;
        check_dest(d)?;
        if s.dests
            .iter()
            .any(|x| x.spec.addr == d.addr && x.spec.port == d.port)
        {
            return Err(IpvsError::Exists);
        }
        s.dests.insert(
            0,
            DestSnapshot {
                spec: d.clone(),
                activeconns: 0,
                inactconns: 0,
                persistconns: 0,
                stats: StatsSnapshot::default(),
            },
        );
        Ok(())
    }

    fn edit_dest(&self, svc: &SvcId, d: &DestSpec) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        let s = v
            .iter_mut()
            .find(|x| x.spec.id == *svc)
            .ok_or(IpvsError::NoService)?;
        check_dest(d)?;
        let x = s
            .dests
            .iter_mut()
            .find(|x| x.spec.addr == d.addr && x.spec.port == d.port)
            .ok_or(IpvsError::NotFound)?;
        x.spec = d.clone();
        Ok(())
    }

    fn del_dest(&self, svc: &SvcId, addr: IpAddr, port: u16) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        let s = v
            .iter_mut()
            .find(|x| x.spec.id == *svc)
            .ok_or(IpvsError::NoService)?;
        let i = s
            .dests
            .iter()
            .position(|x| x.spec.addr == addr && x.spec.port == port)
            .ok_or(IpvsError::NotFound)?;
        s.dests.remove(i);
        Ok(())
    }

    fn zero(&self, svc: Option<&SvcId>) -> Result<(), IpvsError> {
        let mut v = self.services.borrow_mut();
        let zero = |s: &mut ServiceSnapshot| {
            s.stats = StatsSnapshot::default();
            for d in &mut s.dests {
                d.stats = StatsSnapshot::default();
            }
        };
        match svc {
            Some(id) => zero(
                v.iter_mut()
                    .find(|x| x.spec.id == *id)
                    .ok_or(IpvsError::NoService)?,
            ),
            None => v.iter_mut().for_each(zero),
        }
        Ok(())
    }

    fn set_timeouts(&self, t: Timeouts) -> Result<(), IpvsError> {
        let mut cur = self.timeouts();
        if t.tcp != 0 {
            cur.tcp = t.tcp;
        }
        if t.tcpfin != 0 {
            cur.tcpfin = t.tcpfin;
        }
        if t.udp != 0 {
            cur.udp = t.udp;
        }
        self.timeouts.set(Some(cur));
        Ok(())
    }

    fn timeouts(&self) -> Timeouts {
        self.timeouts.get().unwrap_or_default()
    }

    fn services(&self) -> Vec<ServiceSnapshot> {
        self.services.borrow().clone()
    }

    fn conns(&self) -> Vec<ConnSnapshot> {
        self.conns.borrow().clone()
    }

    fn dest_warning(&self, _svc: &SvcId, _d: &DestSpec) -> Option<String> {
        self.warning.borrow().clone()
    }
}
