from setuptools import find_packages, setup

# Test, lint and browser-test tools: `make` installs them, users need not.
DEV_TOOLS = ('pytest', 'flake8', 'isort', 'yapf', 'selenium')


def read_requirements(path='requirements.txt'):
    reqs = []
    with open(path) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line and not line.startswith(DEV_TOOLS):
                reqs.append(line)
    return reqs


setup(
    name='rap_sam',
    version='0.1.0',
    description='RAP-SAM: real-time all-purpose segment anything, '
    'on MMDetection 3.x',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='MIT',
    packages=find_packages(include=['rap_sam', 'rap_sam.*']),
    python_requires='>=3.9',
    install_requires=read_requirements(),
)
