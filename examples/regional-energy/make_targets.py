"""Write data/targets.xlsx, the region's energy targets (sheet "doelen").

Run from anywhere: python examples/regional-energy/make_targets.py
The figures are illustrative: rounded, of realistic magnitude, not official.
"""

from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

HERE = Path(__file__).resolve().parent
COLUMNS = [
    "thema",
    "indicator",
    "eenheid",
    "realisatie_2023",
    "doel_2030",
    "doel_2050",
    "bron",
]

# realisatie_2023 agrees with the totals of data/municipalities.csv.
TARGETS = [
    {
        "thema": "Elektriciteit",
        "indicator": "Duurzame elektriciteit (zon-PV en wind)",
        "eenheid": "TWh/jaar",
        "realisatie_2023": 0.59,
        "doel_2030": 1.4,
        "doel_2050": 3.0,
        "bron": "Regionale Energiestrategie (illustratief)",
    },
    {
        "thema": "Elektriciteit",
        "indicator": "Zon-PV op daken",
        "eenheid": "TJ/jaar",
        "realisatie_2023": 2081,
        "doel_2030": 3800,
        "doel_2050": 9000,
        "bron": "Regionale Energiestrategie (illustratief)",
    },
    {
        "thema": "Elektriciteit",
        "indicator": "Wind op land",
        "eenheid": "TJ/jaar",
        "realisatie_2023": 43,
        "doel_2030": 720,
        "doel_2050": 1440,
        "bron": "Regionale Energiestrategie (illustratief)",
    },
    {
        "thema": "Warmte",
        "indicator": "Aardgasvrije woningen",
        "eenheid": "% van woningen",
        "realisatie_2023": 6.5,
        "doel_2030": 20,
        "doel_2050": 100,
        "bron": "Transitievisies warmte (illustratief)",
    },
    {
        "thema": "Warmte",
        "indicator": "Woningen op een warmtenet",
        "eenheid": "aantal",
        "realisatie_2023": 9500,
        "doel_2030": 25000,
        "doel_2050": 60000,
        "bron": "Transitievisies warmte (illustratief)",
    },
    {
        "thema": "Warmte",
        "indicator": "Aardgasverbruik huishoudens",
        "eenheid": "TJ/jaar",
        "realisatie_2023": 6042,
        "doel_2030": 4800,
        "doel_2050": 0,
        "bron": "Transitievisies warmte (illustratief)",
    },
    {
        "thema": "Mobiliteit",
        "indicator": "Elektrische personenauto's",
        "eenheid": "% van personenauto's",
        "realisatie_2023": 6.4,
        "doel_2030": 25,
        "doel_2050": 100,
        "bron": "Regionale mobiliteitsagenda (illustratief)",
    },
    {
        "thema": "Mobiliteit",
        "indicator": "Publieke laadpunten",
        "eenheid": "aantal",
        "realisatie_2023": 4510,
        "doel_2030": 14000,
        "doel_2050": None,
        "bron": "Regionale mobiliteitsagenda (illustratief)",
    },
    {
        "thema": "Emissies",
        "indicator": "CO2-reductie ten opzichte van 1990",
        "eenheid": "%",
        "realisatie_2023": 21.7,
        "doel_2030": 55,
        "doel_2050": 100,
        "bron": "Klimaatwet (doel), regio (realisatie, illustratief)",
    },
    {
        "thema": "Netten",
        "indicator": "Stations met transportschaarste voor afname",
        "eenheid": "aantal",
        "realisatie_2023": 8,
        "doel_2030": 0,
        "doel_2050": 0,
        "bron": "Netbeheerders (illustratief)",
    },
]

WIDTHS = {"thema": 14, "indicator": 44, "eenheid": 20, "bron": 48}


def main() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "doelen"
    sheet.append(COLUMNS)
    for target in TARGETS:
        sheet.append([target[column] for column in COLUMNS])

    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for index, column in enumerate(COLUMNS, start=1):
        letter = sheet.cell(row=1, column=index).column_letter
        sheet.column_dimensions[letter].width = WIDTHS.get(column, 15)
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(vertical="top", wrap_text=True)
    sheet.freeze_panes = "A2"

    path = HERE / "data" / "targets.xlsx"
    workbook.save(path)
    print(f"wrote {path} ({len(TARGETS)} targets)")


if __name__ == "__main__":
    main()
