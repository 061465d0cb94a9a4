import pytest

from rap_sam.utils.cpu_features import cpu_flags, cpu_has_bf16

ZEN4 = ('processor\t: 0\nvendor_id\t: AuthenticAMD\n'
        'flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n'
        'processor\t: 1\nflags\t\t: fpu sse2\n')
SAPPHIRE = 'flags\t\t: avx512f amx_tile amx_bf16 amx_int8\n'
ZEN3 = 'processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n'


@pytest.mark.parametrize(
    'text, flags, bf16',
    [
        (ZEN4, {
            'fpu', 'sse2', 'avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni'
        }, True),
        (SAPPHIRE, {'avx512f', 'amx_tile', 'amx_bf16', 'amx_int8'}, True),
        (ZEN3, {'fpu', 'sse2', 'avx', 'avx2', 'fma'}, False),
        ('processor\t: 0\n', None, None),  # no flags line
    ])
def test_flags_of_the_first_processor(tmp_path, text, flags, bf16):
    path = tmp_path / 'cpuinfo'
    path.write_text(text)
    assert cpu_flags(
        str(path)) == (None if flags is None else frozenset(flags))
    assert cpu_has_bf16(str(path)) is bf16


def test_unreadable_cpuinfo_is_unknown(tmp_path):
    assert cpu_flags(str(tmp_path / 'none')) is None
    assert cpu_has_bf16(str(tmp_path / 'none')) is None
