from setuptools import find_packages, setup


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


version = {}
with open('sema_mm/version.py', encoding='utf-8') as f:
    exec(f.read(), version)

setup(
    name='sema_mm',
    version=version['__version__'],
    description='Switch EMA (SEMA) for the OpenMMLab training stack',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['sema_mm', 'sema_mm.*']),
    python_requires='>=3.8',
    # torch is deliberately not listed: it must be installed first, by the
    # user, so that pip never picks (and downloads) a build on its own.
    install_requires=['mmengine>=0.10.0,<0.11', 'numpy'],
    extras_require={
        'tests': ['pytest'],
        'mmpretrain': ['mmpretrain==1.2.0'],
        'mmdet': ['mmdet==3.3.0'],
        # self-supervised recipes run on mmpretrain's algorithms
        'selfsup': ['mmpretrain==1.2.0'],
        # experiments/ and tools/analysis (figures, scikit-learn data sets)
        'analysis': ['scikit-learn', 'matplotlib'],
        # tools/benchmark/ema_update.py compares against ema-pytorch too
        'benchmark': ['ema-pytorch'],
        # sharded training under DeepSpeed ZeRO; its setup.py imports torch:
        # install it with --no-build-isolation (scripts/install_stack.sh)
        'deepspeed': ['deepspeed==0.19.8'],
        'all': [
            'mmpretrain==1.2.0', 'mmdet==3.3.0', 'pytest', 'scikit-learn',
            'matplotlib'
        ],
    },
    license='Apache License 2.0',
)
