//! The XDP object as userspace loads it: the program, verified by the kernel, and the maps it
//! shares with userspace, opened by the names both sides use. The switch (`offload`) and the
//! eBPF tests (`cargo xtask test-ebpf`) load it with this one sequence, so a renamed map or a
//! changed map type cannot pass the tests and fail the switch.

extern crate std;

use core::fmt;

use aya::maps::{DevMapHash, HashMap, MapData, MapError, PerCpuHashMap, XskMap};
use aya::programs::{ProgramError, Xdp};
use aya::{Ebpf, EbpfError};

use crate::{
    FdbKey, FdbValue, MAP_COUNTERS, MAP_DEVMAP, MAP_FDB, MAP_PORTS, MAP_XSKS, PortConf,
    PortCounters, XDP_PROGRAM,
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
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Object(e) => Some(e),
            LoadError::Map(_, e) => Some(e),
            LoadError::Program(e) => Some(e),
            LoadError::NoMap(_) | LoadError::NoProgram => None,
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
}
