"""`python -m data.synthetic --layout L --out DIR ...`: see data.synthetic."""
from data.synthetic import main

main()
