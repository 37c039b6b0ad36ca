use opero::{opero, opmap};

#[opero(retries = 3, timeout = "1s")]
fn fetch(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opmap(worker = 4)]
fn each(id: &u32) -> Result<u32, String> {
    Ok(*id)
}

fn main() {}
