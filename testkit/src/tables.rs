//! The tables `etherws ctl` prints, parsed into rows.

/// The lines of a ctl table, header first: up to the first blank line after it (notes may
/// follow, such as `listport`'s about offloaded ports).
fn table_lines(stdout: &str) -> impl Iterator<Item = &str> {
    stdout
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
}

/// The rows of a ctl table (header skipped), each split on whitespace.
pub fn table(stdout: &str) -> Vec<Vec<String>> {
    table_lines(stdout)
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The header row of a ctl table, split on whitespace.
pub fn header(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Rows with exactly as many cells as the header. When a row has fewer words than the header
/// (an empty cell, e.g. an unset address), the row is cut at the header's column starts, which
/// works because every column is left-aligned and padded to its widest cell.
pub fn table_cells(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = table_lines(stdout);
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, ch) in head.char_indices() {
        if !ch.is_whitespace() && prev_space {
            starts.push(i);
        }
        prev_space = ch.is_whitespace();
    }
    lines
        .map(|l| {
            let words: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            if words.len() == starts.len() {
                return words;
            }
            (0..starts.len())
                .map(|c| {
                    let s = starts[c].min(l.len());
                    let e = if c + 1 < starts.len() {
                        starts[c + 1].min(l.len())
                    } else {
                        l.len()
                    };
                    l.get(s..e).unwrap_or("").trim().to_string()
                })
                .collect()
        })
        .collect()
}

fn num<T: std::str::FromStr>(s: &str, what: &str, out: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("bad {what} {s:?} in ctl output:\n{out}"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortRow {
    pub port: u32,
    pub kind: String,
    pub state: String,
    pub rx: u64,
    pub tx: u64,
    pub target: String,
}

pub fn parse_ports(out: &str) -> Vec<PortRow> {
    assert_eq!(
        header(out),
        ["Port", "Type", "State", "RX", "TX", "Target"],
        "listport header:\n{out}"
    );
    table_cells(out)
        .into_iter()
        .map(|r| PortRow {
            port: num(&r[0], "port", out),
            kind: r[1].clone(),
            state: r[2].clone(),
            rx: num(&r[3], "rx", out),
            tx: num(&r[4], "tx", out),
            target: r[5].clone(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct IfRow {
    pub port: u32,
    pub kind: String,
    pub address: String,
    pub netmask: String,
    pub mtu: u32,
    pub target: String,
}

pub fn parse_ifs(out: &str) -> Vec<IfRow> {
    assert_eq!(
        header(out),
        ["Port", "Type", "Address", "Netmask", "MTU", "Target"],
        "listif header:\n{out}"
    );
    table_cells(out)
        .into_iter()
        .map(|r| IfRow {
            port: num(&r[0], "port", out),
            kind: r[1].clone(),
            address: r[2].clone(),
            netmask: r[3].clone(),
            mtu: num(&r[4], "mtu", out),
            target: r[5].clone(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct FdbRow {
    pub port: u32,
    pub vlan: u16,
    pub mac: String,
    pub age: u64,
}

pub fn parse_fdb(out: &str) -> Vec<FdbRow> {
    assert_eq!(
        header(out),
        ["Port", "VLAN", "MAC", "Age"],
        "listfdb header:\n{out}"
    );
    table_cells(out)
        .into_iter()
        .map(|r| FdbRow {
            port: num(&r[0], "port", out),
            vlan: num(&r[1], "vlan", out),
            mac: r[2].to_lowercase(),
            age: num(&r[3], "age", out),
        })
        .collect()
}
