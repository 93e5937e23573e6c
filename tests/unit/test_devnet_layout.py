"""The devnet's address layout refuses a second octet that would make no address."""

from __future__ import annotations

import ipaddress

import pytest

from akacdn.cli import parser
from akacdn.devnet.network import Layout


@pytest.mark.parametrize("net", [0, 100, 255])
def test_layout_addresses_are_addresses(net: int) -> None:
    lay = Layout(net, 53, 80)
    for a in [*lay.tlns, lay.origin, lay.llns(3), lay.edge(3, 2)]:
        assert ipaddress.ip_address(a).is_loopback


@pytest.mark.parametrize("net", [-1, 256, 300])
def test_layout_refuses_a_net_outside_an_octet(net: int) -> None:
    with pytest.raises(ValueError, match="0-255"):
        Layout(net, 53, 80)


@pytest.mark.parametrize("text", ["256", "-3", "ten"])
def test_devnet_command_refuses_a_bad_net(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["devnet", "--net", text])
    assert e.value.code == 2
    assert "not an address octet (0-255)" in capsys.readouterr().err


def test_integration_nets_stay_inside_an_octet() -> None:
    from tests.integration.conftest import _nets

    seen = [next(_nets) for _ in range(1000)]
    assert min(seen) >= 100 and max(seen) <= 249


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`akacdn status | head`: the command ends quietly when its reader closes the pipe."""
    import subprocess
    import sys

    code = (
        "import sys, akacdn.cli as c\n"
        "def talk(args):\n"
        "    for _ in range(100000): print('line of status output')\n"
        "    return 0\n"
        "c.run_status = talk\n"
        "sys.exit(c.main(['status', '--config', 'x']))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()  # the reader leaves
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and b"Traceback" not in err, err
