//! The XDP object as userspace loads it: the program, verified by the kernel, and the maps it
//! shares with userspace, opened by the names both sides use. The switch (`offload`) and the
//! eBPF tests (`cargo xtask test-ebpf`) load it with this one sequence, so a renamed map or a
//! changed map type cannot pass the tests and fail the switch.

extern crate std;

use core::fmt;

use aya::maps::{DevMapHash, HashMap, MapData, MapError, PerCpuHashMap, XskMap};
use aya::programs::{ProgramError, SchedClassifier, SocketFilter, Xdp};
use aya::{Ebpf, EbpfError};

use crate::{
    FdbKey, FdbValue, MAP_COUNTERS, MAP_DEVMAP, MAP_FDB, MAP_PORTS, MAP_XSKS, PortConf,
    PortCounters, SOCK_PROGRAM, TC_PROGRAM, XDP_PROGRAM,
};

/// The loaded object. The maps are taken out of `ebpf`; the program stays in it
/// ([`XdpObject::program`]).
pub struct XdpObject {
    pub ebpf: Ebpf,
    pub fdb: HashMap<MapData, FdbKey, FdbValue>,
    pub ports: HashMap<MapData, u32, PortConf>,
    pub devmap: DevMapHash<MapData>,
    pub xsks: XskMap<MapData>,
    pub counters: PerCpuHashMap<MapData, u32, PortCounters>,
    /// Whether [`XdpObject::load_tc`] has loaded the TC program and the socket filter.
    pub tc_loaded: bool,
}

/// Why the object could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The ELF object itself (or creating its maps).
    Object(EbpfError),
    /// A map the userspace side needs is not in the object.
    NoMap(&'static str),
    /// A map is not of the type userspace expects.
    Map(&'static str, MapError),
    /// The program is not in the object, or not an XDP program.
    NoProgram,
    /// The kernel refused the program (the verifier).
    Program(ProgramError),
    /// The TC program or the socket filter (named) is missing, or the kernel refused it.
    Tc(&'static str, Option<ProgramError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Object(e) => write!(f, "cannot load the eBPF object: {e}"),
            LoadError::NoMap(m) => write!(f, "no map {m} in the eBPF object"),
            LoadError::Map(m, e) => write!(f, "map {m} of the eBPF object: {e}"),
            LoadError::NoProgram => write!(f, "no XDP program {XDP_PROGRAM} in the eBPF object"),
            LoadError::Program(e) => {
                write!(f, "the kernel refused the XDP program (verifier): {e}")
            }
            LoadError::Tc(p, None) => write!(f, "no program {p} of the right type in the object"),
            LoadError::Tc(p, Some(e)) => {
                write!(f, "the kernel refused the program {p} (verifier): {e}")
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Object(e) => Some(e),
            LoadError::Map(_, e) => Some(e),
            LoadError::Program(e) | LoadError::Tc(_, Some(e)) => Some(e),
            LoadError::NoMap(_) | LoadError::NoProgram | LoadError::Tc(_, None) => None,
        }
    }
}

impl XdpObject {
    /// Loads the object `data` into the kernel: maps created, program verified (not attached).
    pub fn load(data: &[u8]) -> Result<XdpObject, LoadError> {
        let mut ebpf = Ebpf::load(data).map_err(LoadError::Object)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::NoMap(name));
        let typed = |name: &'static str| move |e| LoadError::Map(name, e);
        let fdb = take(MAP_FDB)?.try_into().map_err(typed(MAP_FDB))?;
        let ports = take(MAP_PORTS)?.try_into().map_err(typed(MAP_PORTS))?;
        let devmap = take(MAP_DEVMAP)?.try_into().map_err(typed(MAP_DEVMAP))?;
        let xsks = take(MAP_XSKS)?.try_into().map_err(typed(MAP_XSKS))?;
        let counters = take(MAP_COUNTERS)?
            .try_into()
            .map_err(typed(MAP_COUNTERS))?;
        let mut object = XdpObject {
            ebpf,
            fdb,
            ports,
            devmap,
            xsks,
            counters,
            tc_loaded: false,
        };
        object.try_program()?.load().map_err(LoadError::Program)?;
        Ok(object)
    }

    fn try_program(&mut self) -> Result<&mut Xdp, LoadError> {
        self.ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(LoadError::NoProgram)?
            .try_into()
            .map_err(|_| LoadError::NoProgram)
    }

    /// The XDP program (checked when the object was loaded).
    pub fn program(&mut self) -> &mut Xdp {
        self.try_program().expect("checked by XdpObject::load")
    }

    /// Loads (verifies) the TC program and the socket filter, once: they are loaded with the
    /// first TC port only, so a kernel refusing them costs only the TC mode.
    pub fn load_tc(&mut self) -> Result<(), LoadError> {
        if self.tc_loaded {
            return Ok(());
        }
        self.tc_program()?
            .load()
            .map_err(|e| LoadError::Tc(TC_PROGRAM, Some(e)))?;
        self.sock_program()?
            .load()
            .map_err(|e| LoadError::Tc(SOCK_PROGRAM, Some(e)))?;
        self.tc_loaded = true;
        Ok(())
    }

    /// The TC program (loaded by [`XdpObject::load_tc`]).
    pub fn tc_program(&mut self) -> Result<&mut SchedClassifier, LoadError> {
        self.ebpf
            .program_mut(TC_PROGRAM)
            .ok_or(LoadError::Tc(TC_PROGRAM, None))?
            .try_into()
            .map_err(|_| LoadError::Tc(TC_PROGRAM, None))
    }

    /// The socket filter (loaded by [`XdpObject::load_tc`]).
    pub fn sock_program(&mut self) -> Result<&mut SocketFilter, LoadError> {
        self.ebpf
            .program_mut(SOCK_PROGRAM)
            .ok_or(LoadError::Tc(SOCK_PROGRAM, None))?
            .try_into()
            .map_err(|_| LoadError::Tc(SOCK_PROGRAM, None))
    }
}
