"""rap_sam.deploy.benchmark, the measuring pieces of the benchmark: the
roofline's arithmetic, the click timing's order, which variants a run
times and which it skips here, with known answers."""
import pytest
from pytest import approx


def test_roofline_known_answer():
    """The library's arithmetic on given peaks and times: the best of two
    measurements per shape, floor = GMAC / peak, the bound on the speed-up
    over Mask2Former, and a network faster than its floor called out."""
    from rap_sam.deploy.benchmark import best_of_rooflines, roofline_bounds
    runs = [
        dict(
            device='cpu',
            threads=2,
            repeats=3,
            gmac_per_s=dict(fp32=dict(square=100., tall=50.)),
            skipped=dict(bf16='torch.mm failed: x')),
        dict(
            device='cpu',
            threads=2,
            repeats=3,
            gmac_per_s=dict(
                fp32=dict(square=80., tall=60.), bf16=dict(square=200.)),
            skipped={})
    ]
    measured = best_of_rooflines(runs)
    assert measured['gmac_per_s'] == dict(
        fp32=dict(square=100., tall=60.), bf16=dict(square=200.))
    assert measured['peak_gmac_per_s'] == dict(fp32=100., bf16=200.)
    assert measured['repeats'] == 6 and measured['skipped'] == {}
    medians = {
        'fast': dict(pre=0.1, encoder=1.5, head=0.5, post=0.4, e2e=2.5),
        'openvino': dict(pre=0.1, encoder=1.0, head=0.2, post=0.4, e2e=1.7),
        'openvino-int8': dict(pre=0.1, encoder=0.5, post=0.4, e2e=1.0),
        'mask2former': dict(pre=0.1, encoder=2., head=7., post=0.9, e2e=10.)
    }
    roof = roofline_bounds(
        measured, 150.,
        dict(fast='fp32', openvino='fp32', **{'openvino-int8': 'int8'}),
        medians)
    assert roof['floor_s'] == approx(dict(fp32=1.5, bf16=0.75))
    fast = roof['variants']['fast']
    assert fast['network_s'] == approx(2.0)
    assert fast['network_vs_floor'] == approx(2.0 / 1.5)
    assert fast['bound_s'] == approx(2.0)  # 1.5 + 0.1 + 0.4
    assert fast['max_vs_mask2former'] == approx(5.0)
    assert fast['vs_mask2former'] == approx(4.0)
    assert roof['below_floor'] == ['openvino']
    int8 = roof['variants']['openvino-int8']
    assert int8['floor_s'] is None and 'no int8 peak' in int8['why_no_floor']
    # Without a FLOP count nothing is bounded.
    unknown = roofline_bounds(measured, None, dict(fast='fp32'), medians)
    assert unknown['floor_s'] is None
    assert 'not counted' in unknown['variants']['fast']['why_no_floor']


def test_clicks_are_paused_and_interleaved(monkeypatch):
    """time_clicks: one untimed click per runner, then rounds of one timed
    click each, every timed click ``pause`` seconds after the one before
    (a user's pace, and the other runner's threads settle)."""
    from rap_sam.deploy import benchmark as bench
    events = []
    monkeypatch.setattr(bench.runners.time, 'sleep',
                        lambda s: events.append(s))

    class Clicker:

        def __init__(self, name):
            self.name, self.times = name, {}

        def set_clicks(self, boxes):
            events.append((self.name, 'set', boxes))

        def click(self):
            events.append((self.name, 'click'))
            return dict(decode_cached=0.5)

    a, b = Clicker('a'), Clicker('b')
    bench.time_clicks([a, b], 'boxes', repeats=2, pause=0.25)
    assert events == [('a', 'set', 'boxes'), ('a', 'click'),
                      ('b', 'set', 'boxes'), ('b', 'click')
                      ] + [0.25, ('a', 'click'), 0.25, ('b', 'click')] * 2
    assert a.times == b.times == dict(decode_cached=[0.5, 0.5])


def test_variants_with_each_post_processing():
    """Each fast and export variant with every post-processing asked for
    (the reference mode with the exact one); names say which."""
    from rap_sam.deploy import benchmark as bench
    found = bench.variants(('reference', 'fast'), ('fp32', 'int8'),
                           backends=('torch', 'openvino'),
                           posts=('exact', 'half'))
    assert [v.name for v in found] == [
        'reference', 'fast', 'fast-half', 'fast-int8', 'fast-int8-half',
        'openvino', 'openvino-half', 'openvino-int8', 'openvino-int8-half'
    ]
    assert [v.post for v in found if v.precision == 'fp32'
            ] == ['exact', 'exact', 'half', 'exact', 'half']

    video = [
        bench.skip_reason(v, task='video') for v in found
        if v.backend == 'torch' and v.precision == 'fp32'
    ]
    assert video[:2] == [None, None]
    assert video[2].startswith("post='half' is for images")


def test_half_post_with_the_reference_mode_alone_times_the_fast_mode():
    """--variants reference --post half: the approximate post-processing
    exists on the fast mode only, which is then timed with it (as bf16 is)
    instead of the half being dropped without a word."""
    from rap_sam.deploy import benchmark as bench
    names = [
        v.name
        for v in bench.variants(('reference', ), ('fp32', ), posts=('half', ))
    ]
    assert names == ['reference', 'fast-half']
    names = [
        v.name for v in bench.variants(('reference', ), ('fp32', ),
                                       posts=('exact', 'half'))
    ]
    assert names == ['reference', 'fast-half']
    assert [v.name for v in bench.variants(('reference', ))] == ['reference']


@pytest.mark.parametrize(
    'machine, skipped',
    [
        (dict(avx512_bf16=True, amx_bf16=False), set()),
        (dict(avx512_bf16=False, amx_bf16=True), set()),
        (dict(avx512_bf16=False,
              amx_bf16=False), {'fast-bf16', 'openvino-bf16'}),
        ({}, set()),  # flags unknown: tried
    ])
def test_bf16_is_skipped_on_a_cpu_without_it(machine, skipped):
    """bf16 variants on a CPU with neither AVX-512 BF16 nor AMX: OpenVINO
    would compute fp32 and torch take many times fp32's time."""
    from rap_sam.deploy import benchmark as bench
    found = bench.variants(('fast', ), ('fp32', 'bf16'),
                           backends=('torch', 'openvino'))
    reasons = {
        v.name: bench.skip_reason(v, machine=machine)
        for v in found if v.precision == 'bf16'
    }
    assert {name for name, why in reasons.items() if why} == skipped
    for name in skipped:
        assert reasons[name].startswith(
            'this CPU has neither AVX-512 BF16 nor AMX: ')
    # On a GPU torch's bf16 does not depend on the CPU.
    torch_bf16 = next(v for v in found if v.name == 'fast-bf16')
    assert bench.skip_reason(torch_bf16, 'cuda', machine=machine) is None


def test_no_bf16_peak_is_timed_on_a_cpu_without_it(monkeypatch):
    from rap_sam.deploy import benchmark as bench
    timed = []
    monkeypatch.setattr(bench.roofline, 'cpu_has_bf16', lambda: False)
    monkeypatch.setattr(
        bench.roofline, 'matmul_throughput', lambda device, precision, repeats:
        timed.append(precision) or dict(square=1.))
    roof = bench.measure_roofline('cpu', ('bf16', 'int8'))
    assert timed == ['fp32']
    assert roof['peak_gmac_per_s'] == dict(fp32=1.)
    assert roof['skipped']['bf16'].startswith(
        'this CPU has neither AVX-512 BF16 nor AMX')
    assert 'no int8 torch.mm' in roof['skipped']['int8']
