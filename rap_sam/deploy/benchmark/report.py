"""The benchmark's report (:class:`~.inference_benchmark.
InferenceBenchmark`'s) in words: what ``tools/analysis/benchmark.py``
prints."""
import json


def format_table(report: dict) -> str:
    """One column per variant: the stages' medians, then FPS, the ratios to
    Mask2Former and the floor, parameters, GFLOPs and peak memory ('-'
    where a variant has no such figure)."""
    names = list(report['variants'])
    keys = ['pre', 'backbone', 'neck', 'encoder', 'head', 'post', 'e2e']
    if report['task'] == 'prompt':
        keys += ['features', 'decode']
    keys += [
        k
        for k in ('decode_cached', 'decode_cached_head', 'decode_cached_post')
        if any(k in e['median_s'] for e in report['variants'].values())
    ]
    width = max(12, *(len(n) + 2 for n in names))
    lines = [
        'stage (median s)'.ljust(20) + ''.join(n.rjust(width) for n in names)
    ]
    for key in keys:
        row = key.ljust(20)
        for name in names:
            value = report['variants'][name]['median_s'].get(key)
            row += ('-' if value is None else f'{value:.4f}').rjust(width)
        lines.append(row)
    roof = (report.get('roofline') or {}).get('variants', {})
    rows = [('FPS', 'fps', '.2f'), ('x Mask2Former', 'vs_mask2former', '.2f')]
    if any('max_vs_mask2former' in e for e in roof.values()):
        rows.append(('max x Mask2Former', 'max_vs_mask2former', '.2f'))
    if roof:
        rows += [('network floor (s)', 'floor_s', '.4f'),
                 ('network / floor', 'network_vs_floor', '.2f')]
    if any('calibration' in e for e in report['variants'].values()):
        # int8's accuracy depends on it (docs/deploy.md, Measured accuracy).
        rows.append(('int8 calibration', 'calibration', None))
    rows += [('params (M)', 'params_m', '.2f'),
             ('GFLOPs', 'gflops_total', '.2f'),
             ('peak mem (MiB)', 'peak_memory_mb', '.2f')]
    for label, field, spec in rows:
        row = label.ljust(20)
        for name in names:
            entry = report['variants'][name]
            value = entry.get(field, roof.get(name, {}).get(field))
            row += ('-' if value is None else
                    (format(value, spec)
                     if isinstance(value, float) else str(value))).rjust(width)
        lines.append(row)
    return '\n'.join(lines)


def roofline_lines(roof: dict) -> list:
    """The roofline's measurements and what they allow, in words."""
    lines = []
    for precision, shapes in roof['gmac_per_s'].items():
        each = ', '.join(f'{k}: {v:.1f}' for k, v in shapes.items())
        lines.append(
            f'roofline: torch.mm {precision} on {roof["device"]}, '
            f'threads={roof["threads"]}, best of {roof["repeats"]} (before '
            f'and after the timed rounds): peak '
            f'{roof["peak_gmac_per_s"][precision]:.1f} GMAC/s ({each})')
    for precision, reason in roof['skipped'].items():
        lines.append(f'roofline: no {precision} peak: {reason}')
    if roof['floor_s'] is None:
        lines.append("roofline: the network's floor is unknown: the model's "
                     'GMAC were not counted (--no-flops, or the count '
                     'failed: see the notes)')
        return lines
    floors = ', '.join(f'{v:.4f} s in {p}' for p, v in roof['floor_s'].items())
    lines.append(
        f'roofline: RAP-SAM counts {roof["model_gmac"]:.1f} GMAC (ops the '
        'counter cannot see count zero), so its network (encoder and '
        f'decoder) takes at least {floors} here')
    for name, entry in roof['variants'].items():
        if 'max_vs_mask2former' in entry:
            lines.append(
                f'roofline: {name} can be at most '
                f'{entry["max_vs_mask2former"]:.2f}x Mask2Former end to end '
                f'on this machine (floor {entry["floor_s"]:.4f} s + its '
                'measured pre- and post-processing); measured '
                f'{entry["vs_mask2former"]:.2f}x')
        elif entry['floor_s'] is None:
            lines.append(
                f'roofline: {name}: no floor ({entry["why_no_floor"]})')
    if roof['below_floor']:
        lines.append(
            f'roofline: the network of {", ".join(roof["below_floor"])} ran '
            'faster than the floor: the peak was measured low (other jobs '
            'on the machine), so these bounds are no limits; rerun on an '
            'idle machine')
    return lines


def format_report(report: dict) -> str:
    """The whole report as printed: the run's setting and machine, notes,
    skipped variants, the table, speed-ups, the roofline and agreement."""
    lines = []
    shape, padded = report['shape'], report['padded_shape']
    lines.append(f'RAP-SAM benchmark: task={report["task"]} input={shape[0]}x'
                 f'{shape[1]} (padded {padded[0]}x{padded[1]}) '
                 f'device={report["device"]} '
                 f'threads={report["machine"]["threads"]} '
                 f'warmup={report["warmup"]} repeats={report["repeats"]}' +
                 (f' clicks={report["click_repeats"]}' if report.
                  get('click_repeats') else ''))
    lines.append(f'machine: {report["machine"].get("cpu")} '
                 f'{report["machine"].get("gpu", "")}; load average before '
                 f'{report["load_average_before"]}, after '
                 f'{report["load_average_after"]}')
    for note in report['notes']:
        lines.append(f'note: {note}')
    for name, reason in report['skipped'].items():
        lines.append(f'skipped {name}: {reason}')
    lines.append(format_table(report))
    for key, value in report['speedup'].items():
        lines.append(f'speedup {key}: {value:.2f}x')
    if report.get('roofline'):
        lines += roofline_lines(report['roofline'])
    agreement = report.get('agreement')
    if agreement:
        for name, acc in agreement['variants'].items():
            lines.append(f'agreement {name} vs {agreement["baseline"]}: '
                         f'{json.dumps(acc, sort_keys=True)}')
    return '\n'.join(lines)
