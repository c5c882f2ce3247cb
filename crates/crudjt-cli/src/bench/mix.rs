//! The operation mix of `crudjt bench`: `create=1,read=8,update=1,delete=0`.

use std::fmt;

/// One kind of call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// CreateToken.
    Create,
    /// ReadToken.
    Read,
    /// UpdateToken.
    Update,
    /// DeleteToken.
    Delete,
}

impl Op {
    /// Every op, in table order.
    pub const ALL: [Op; 4] = [Op::Create, Op::Read, Op::Update, Op::Delete];

    /// The op's name in the mix and the result table.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Read => "read",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    /// Its place in [`Op::ALL`], for per-op arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the ops; an op left out of the text weighs 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 4],
}

impl Mix {
    /// Parses `name=weight` pairs separated by commas.
    ///
    /// # Errors
    ///
    /// A message for clap: an unknown or repeated op, a weight that is not
    /// a whole number, or weights that are all 0.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = [None; 4];
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not op=weight, like read=8"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    format!("unknown op `{name}`; the ops are create, read, update and delete")
                })?;
            let weight = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {name} must be a whole number, got `{weight}`"))?;
            if weights[op.index()].replace(weight).is_some() {
                return Err(format!("{name} is given twice"));
            }
        }
        let weights = weights.map(|w| w.unwrap_or(0));
        if weights.iter().all(|&w| w == 0) {
            return Err("the mix needs at least one op with a weight above 0".into());
        }
        Ok(Mix { weights })
    }

    /// The weight of `op`.
    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    /// The op for a uniformly random `roll`, in proportion to the weights.
    pub fn pick(&self, roll: u64) -> Op {
        let total: u64 = self.weights.iter().map(|&w| u64::from(w)).sum();
        let mut point = roll % total;
        for op in Op::ALL {
            let weight = u64::from(self.weight(op));
            if point < weight {
                return op;
            }
            point -= weight;
        }
        unreachable!("point is below the sum of the weights")
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = Op::ALL
            .iter()
            .map(|&op| format!("{}={}", op.name(), self.weight(op)))
            .collect();
        f.write_str(&pairs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_default() {
        let text = "create=1,read=8,update=1,delete=0";
        let mix = Mix::parse(text).unwrap();
        assert_eq!(mix.to_string(), text);
        assert_eq!(Mix::parse("read=3").unwrap().weight(Op::Create), 0);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for text in [
            "",
            "read=0",
            "read",
            "scan=1",
            "read=x",
            "read=1,read=2",
            "read=-1",
        ] {
            assert!(Mix::parse(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn picks_in_proportion() {
        let mix = Mix::parse("create=1,read=2,delete=1").unwrap();
        let picks: Vec<Op> = (0..4).map(|roll| mix.pick(roll)).collect();
        assert_eq!(picks, [Op::Create, Op::Read, Op::Read, Op::Delete]);
        assert_eq!(mix.pick(u64::MAX), Op::Delete);
    }
}
