# Wrong in case match-big, with an exception message that tries to paint a fake "PASS" table over
# the report (terminal escapes, carriage returns), inject rich markup ([bold green], [link=...],
# a stray [/]) and break XML (control characters): every format must show it as inert text.
import torch.nn as nn

FAKE = ("\x1b[2J\x1b[H\x1b[32m4/4 PASS\x1b[0m\r[bold green]PASS[/] [/] [link=https://evil.example]x[/link] "
        "\x00\x07\x0b\x1b]8;;https://evil.example\x07click\x1b]8;;\x07 \u202eSSAP \ufffe")


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            raise ValueError(FAKE)
        return 2 * self.lin(x)
