from compose_kfp import errors
from compose_kfp.oci import errors as oci_errors


def test_exit_codes_are_distinct_per_kind():
    kinds = [errors.ConfigError, errors.BuildError, errors.RegistryError, errors.AuthError,
             errors.RenderError, errors.RunError, errors.StaleError, errors.BusyError]
    codes = [k.exit_code for k in kinds]
    assert len(set(codes)) == len(codes)
    assert 2 not in codes  # reserved for `plan --exit-code`: changes pending


def test_oci_errors_map_to_their_kind():
    assert errors.exit_code_for(oci_errors.Unauthorized("refused", status=401)) == errors.AuthError.exit_code
    assert errors.exit_code_for(oci_errors.NotFound("gone", status=404)) == errors.RegistryError.exit_code
    assert errors.exit_code_for(oci_errors.InvalidReference("bad")) == errors.ConfigError.exit_code
    assert errors.exit_code_for(oci_errors.PlatformNotFound("none")) == errors.BuildError.exit_code
    assert errors.exit_code_for(ValueError("x")) == 1
