"""The conformance kit: suites that an engine plugin's own tests run against its engine (extra
`modelyard-core[testing]`; pytest is imported only by the suites' tests themselves).

    from modelyard.testing.llm import LLMEngineSuite, LLMServerSuite
    from modelyard.testing.server import Server

    class TestMyEngine(LLMEngineSuite):          # in-process
        @pytest.fixture(scope="class")
        @classmethod
        def engine(cls):
            engine = MyEngine("tiny", registration, spec, path)
            engine.load()
            return engine

    class TestMyEngineServed(LLMServerSuite):    # end to end, through a real server
        @pytest.fixture(scope="class")
        @classmethod
        def served(cls, tmp_path_factory):
            server = Server(tmp_path_factory.mktemp("home")).start()
            yield server, server.launch("LLM", registration, engine="my-engine")  # a dict
            server.stop()

Each suite is a class of `test_*` methods that pytest collects in the subclass.
"""
