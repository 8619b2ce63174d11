"""Conformance suites that an engine plugin's own tests run against its engine (extra
`modelyard-core[testing]`; pytest is imported only by the suites' tests themselves).

    from modelyard.testing.llm import LLMEngineSuite

    class TestMyEngine(LLMEngineSuite):
        @pytest.fixture(scope="class")
        @classmethod
        def engine(cls):
            engine = MyEngine("tiny", registration, spec, path)
            engine.load()
            return engine

Each suite is a class of `test_*` methods that pytest collects in the subclass.
"""
