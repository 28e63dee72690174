import unittest

from alpha import greet


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self) -> None:
        self.assertEqual(greet("cascade"), "hello, cascade")


if __name__ == "__main__":
    unittest.main()
