"""``relctl run``'s operating options are checked before anything starts."""

from __future__ import annotations

from click.testing import CliRunner

from controller.cli import cli


def test_a_lease_shorter_than_the_interval_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli, ["run", "--remote", "/nonexistent", "--interval", "30", "--lease-duration", "59"]
    )
    assert result.exit_code == 2
    assert "--lease-duration must be at least twice --interval" in result.output


def test_a_listen_address_that_is_not_host_port_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["run", "--remote", "/nonexistent", "--listen", "x:http"])
    assert result.exit_code == 2
    assert "not HOST:PORT" in result.output


def test_run_documents_its_operating_options() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])
    for option in ("--listen", "--log-format", "--lease-duration", "--replica-id"):
        assert option in result.output
