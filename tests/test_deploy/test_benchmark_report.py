"""The benchmark report in words, on a given report: the table's columns
and rows, '-' for what a variant lacks, the roofline's sentences."""
from rap_sam.deploy.benchmark.report import format_report, format_table


def report(**extra):
    variants = dict(
        fast=dict(
            median_s=dict(pre=0.01, encoder=0.5, head=0.2, post=0.05, e2e=1.),
            fps=1.0,
            params_m=47.2,
            vs_mask2former=4.0),
        **{
            'openvino-int8':
            dict(
                median_s=dict(pre=0.01, encoder=0.25, e2e=0.5),
                fps=2.0,
                calibration='percentile')
        })
    return dict(
        task='image',
        shape=[64, 96],
        padded_shape=[64, 96],
        device='cpu',
        machine=dict(threads=2, cpu='AMD EPYC'),
        warmup=1,
        repeats=5,
        load_average_before=[0.5, 0.4, 0.3],
        load_average_after=[0.6, 0.4, 0.3],
        notes=['random weights (seeded)'],
        skipped={'fast-bf16': 'this CPU has neither AVX-512 BF16 nor AMX'},
        variants=variants,
        speedup={'fast_vs_mask2former_e2e': 4.0},
        **extra)


def test_table_known_answer():
    lines = format_table(report()).splitlines()
    width = len('openvino-int8') + 2
    assert lines[0] == ('stage (median s)'.ljust(20) + 'fast'.rjust(width) +
                        'openvino-int8'.rjust(width))
    rows = {line[:20].strip(): line[20:].split() for line in lines[1:]}
    assert rows['e2e'] == ['1.0000', '0.5000']
    assert rows['head'] == ['0.2000', '-']
    assert rows['backbone'] == ['-', '-']
    assert rows['FPS'] == ['1.00', '2.00']
    assert rows['x Mask2Former'] == ['4.00', '-']
    assert rows['int8 calibration'] == ['-', 'percentile']
    assert rows['params (M)'] == ['47.20', '-']
    # No clicks timed, no roofline: no such rows.
    assert not {'decode_cached', 'network floor (s)', 'max x Mask2Former'
                } & rows.keys()


def test_report_in_words():
    roof = dict(
        device='cpu',
        threads=2,
        repeats=6,
        gmac_per_s=dict(fp32={'2048x2048x2048': 50.}),
        peak_gmac_per_s=dict(fp32=50.),
        skipped=dict(int8='no int8 torch.mm'),
        model_gmac=25.,
        floor_s=dict(fp32=0.5),
        below_floor=[],
        variants=dict(
            fast=dict(
                floor_s=0.5,
                network_vs_floor=1.4,
                max_vs_mask2former=7.27,
                vs_mask2former=4.0),
            **{
                'openvino-int8':
                dict(floor_s=None, why_no_floor='no int8 peak')
            }))
    text = format_report(
        report(
            roofline=roof,
            agreement=dict(
                baseline='fast',
                variants={'openvino-int8': dict(mask_logits_rel_err=0.01)})))
    lines = text.splitlines()
    assert lines[0] == ('RAP-SAM benchmark: task=image input=64x96 (padded '
                        '64x96) device=cpu threads=2 warmup=1 repeats=5')
    assert lines[2] == 'note: random weights (seeded)'
    assert lines[3] == ('skipped fast-bf16: this CPU has neither AVX-512 '
                        'BF16 nor AMX')
    assert 'speedup fast_vs_mask2former_e2e: 4.00x' in lines
    assert ('roofline: torch.mm fp32 on cpu, threads=2, best of 6 (before '
            'and after the timed rounds): peak 50.0 GMAC/s '
            '(2048x2048x2048: 50.0)') in lines
    assert 'roofline: no int8 peak: no int8 torch.mm' in lines
    assert ('roofline: fast can be at most 7.27x Mask2Former end to end on '
            'this machine (floor 0.5000 s + its measured pre- and '
            'post-processing); measured 4.00x') in lines
    assert 'roofline: openvino-int8: no floor (no int8 peak)' in lines
    assert lines[-1] == ('agreement openvino-int8 vs fast: '
                         '{"mask_logits_rel_err": 0.01}')
    rows = {line[:20].strip(): line[20:].split() for line in lines}
    assert rows['network floor (s)'] == ['0.5000', '-']
    assert rows['max x Mask2Former'] == ['7.27', '-']
