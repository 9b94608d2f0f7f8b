//! The IPVS TCP state machine as data (spec §3.3, kernel `ip_vs_proto_tcp.c`).
//!
//! Three blocks (INPUT, OUTPUT, INPUT-ONLY) of four event rows (syn, fin, ack,
//! rst) of eleven columns (the current state), in the kernel's order so a
//! reviewer can diff the tables against the spec line by line. The transition
//! is a pure function; the caller moves the active/inactive counters.

/// TCP connection states, numbered as the kernel numbers them.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// NONE.
    None = 0,
    /// ESTABLISHED.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
}

use TcpState::*;

const ALL: [TcpState; 11] = [
    None,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
];

impl TcpState {
    /// From the kernel's number (unknown numbers map to NONE).
    pub fn from_u8(v: u8) -> TcpState {
        ALL.get(v as usize).copied().unwrap_or(None)
    }

    /// The name `ipvsadm -L -c` prints.
    pub fn name(self) -> &'static str {
        match self {
            None => "NONE",
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait => "FIN_WAIT",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            SynAck => "SYNACK",
        }
    }

    /// Active states count in ActiveConn (spec §3.6).
    pub fn is_active(self) -> bool {
        matches!(self, Established | SynSent | SynRecv | SynAck)
    }

    /// Default timeout in seconds (spec §3.3 table).
    pub fn default_timeout(self) -> u32 {
        match self {
            None => 2,
            Established => 900,
            SynSent => 120,
            SynRecv => 60,
            FinWait => 120,
            TimeWait => 120,
            Close => 10,
            CloseWait => 60,
            LastAck => 30,
            Listen => 120,
            SynAck => 120,
        }
    }
}

/// Which table block a packet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → director.
    Input = 0,
    /// Real server → director.
    Output = 1,
    /// Client → director on a connection whose replies bypass us (DR, TUN).
    InputOnly = 2,
}

/// The event a TCP header maps to (RST wins, then SYN, FIN, ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    /// SYN.
    Syn = 0,
    /// FIN.
    Fin = 1,
    /// ACK.
    Ack = 2,
    /// RST.
    Rst = 3,
}

/// TCP flag bits as in the header's 13th byte.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Classify a TCP flags byte; `None` when no RST/SYN/FIN/ACK bit is set (the
/// kernel then forces CLOSE).
pub fn event_of(tcp_flags: u8) -> Option<TcpEvent> {
    if tcp_flags & flags::RST != 0 {
        Some(TcpEvent::Rst)
    } else if tcp_flags & flags::SYN != 0 {
        Some(TcpEvent::Syn)
    } else if tcp_flags & flags::FIN != 0 {
        Some(TcpEvent::Fin)
    } else if tcp_flags & flags::ACK != 0 {
        Some(TcpEvent::Ack)
    } else {
        Option::None
    }
}

const SR: TcpState = SynRecv;
const ES: TcpState = Established;
const SS: TcpState = SynSent;
const FW: TcpState = FinWait;
const TW: TcpState = TimeWait;
const CL: TcpState = Close;
const CW: TcpState = CloseWait;
const LA: TcpState = LastAck;
const LI: TcpState = Listen;
const SA: TcpState = SynAck;

type Table = [[[TcpState; 11]; 4]; 3];

/// `tcp_states` (normal mode).
#[rustfmt::skip]
const TCP_STATES: Table = [
    [
        //  NONE ESTAB SYN_S SYN_R FIN_W TIME_W CLOSE CLOSE_W LAST_A LISTEN SYNACK
        /* INPUT syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* INPUT fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /* INPUT ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* INPUT rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    [
        /* OUTPUT syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /* OUTPUT fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* OUTPUT ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* OUTPUT rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    [
        /* IN-ONLY syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* IN-ONLY fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* IN-ONLY ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* IN-ONLY rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// `tcp_states_dos` (used while `secure_tcp` is active).
#[rustfmt::skip]
const TCP_STATES_DOS: Table = [
    [
        /* INPUT syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
        /* INPUT fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
        /* INPUT ack */ [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
        /* INPUT rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
    [
        /* OUTPUT syn */ [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
        /* OUTPUT fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* OUTPUT ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* OUTPUT rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    [
        /* IN-ONLY syn */ [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
        /* IN-ONLY fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* IN-ONLY ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* IN-ONLY rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// The next state for a packet with `tcp_flags` seen in direction `dir`
/// (`secure` selects the DoS table).
pub fn next(secure: bool, dir: Direction, tcp_flags: u8, cur: TcpState) -> TcpState {
    let table = if secure { &TCP_STATES_DOS } else { &TCP_STATES };
    match event_of(tcp_flags) {
        Some(ev) => table[dir as usize][ev as usize][cur as usize],
        Option::None => Close,
    }
}

#[cfg(test)]
mod test {
    use super::flags::*;
    use super::*;

    fn run(seq: &[(Direction, u8)]) -> Vec<TcpState> {
        let mut s = None;
        seq.iter()
            .map(|(d, f)| {
                s = next(false, *d, *f, s);
                s
            })
            .collect()
    }

    #[test]
    fn nat_worked_sequence_of_the_spec() {
        use Direction::*;
        let got = run(&[
            (Input, SYN),
            (Output, SYN | ACK),
            (Input, ACK),
            (Input, FIN | ACK),
            (Output, ACK),
            (Output, FIN | ACK),
            (Input, ACK),
        ]);
        assert_eq!(got, vec![SR, SR, ES, CW, CW, TW, TW]);
    }

    #[test]
    fn dr_input_only_lingers_in_fin_wait() {
        use Direction::*;
        let got = run(&[
            (InputOnly, SYN),
            (InputOnly, ACK),
            (InputOnly, ACK),
            (InputOnly, FIN | ACK),
            (InputOnly, ACK),
        ]);
        assert_eq!(got, vec![SR, ES, ES, FW, FW]);
        assert_eq!(FW.default_timeout(), 120);
    }

    #[test]
    fn rst_wins_and_no_flags_close() {
        assert_eq!(next(false, Direction::Input, RST | SYN, Established), Close);
        assert_eq!(next(false, Direction::Input, 0, Established), Close);
        assert_eq!(next(false, Direction::Input, SYN | ACK, None), SynRecv);
    }

    #[test]
    fn every_row_of_the_normal_table_matches_the_spec_text() {
        // The spec's table, as text, column order NONE..SYNACK.
        let spec = "\
INPUT syn SR ES ES SR SR SR SR SR SR SR SR
INPUT fin CL CW SS TW TW TW CL CW LA LI TW
INPUT ack ES ES SS ES FW TW CL CW CL LI ES
INPUT rst CL CL CL SR CL CL CL CL LA LI SR
OUTPUT syn SS ES SS SR SS SS SS SS SS LI SR
OUTPUT fin TW FW SS TW FW TW CL TW LA LI TW
OUTPUT ack ES ES SS ES FW TW CL CW LA ES ES
OUTPUT rst CL CL SS CL CL TW CL CL CL CL CL
IN-ONLY syn SR ES ES SR SR SR SR SR SR SR SR
IN-ONLY fin CL FW SS TW FW TW CL CW LA LI TW
IN-ONLY ack ES ES SS ES FW TW CL CW CL LI ES
IN-ONLY rst CL CL CL SR CL CL CL CL LA LI CL";
        let abbrev = |s: TcpState| match s {
            SynRecv => "SR",
            Established => "ES",
            SynSent => "SS",
            FinWait => "FW",
            TimeWait => "TW",
            Close => "CL",
            CloseWait => "CW",
            LastAck => "LA",
            Listen => "LI",
            SynAck => "SA",
            None => "NO",
        };
        for line in spec.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let dir = match w[0] {
                "INPUT" => Direction::Input,
                "OUTPUT" => Direction::Output,
                _ => Direction::InputOnly,
            };
            let f = match w[1] {
                "syn" => SYN,
                "fin" => FIN,
                "ack" => ACK,
                _ => RST,
            };
            for (col, want) in w[2..].iter().enumerate() {
                let got = next(false, dir, f, TcpState::from_u8(col as u8));
                assert_eq!(abbrev(got), *want, "{line} column {col}");
            }
        }
    }

    #[test]
    fn dos_table_uses_synack() {
        assert_eq!(next(true, Direction::InputOnly, SYN, None), SynAck);
        assert_eq!(next(true, Direction::Input, ACK, SynRecv), SynRecv);
    }
}
