"""Write prompts.xlsx, the prompt sheet of the regional-energy example.

Run from anywhere: python examples/regional-energy/make_prompts.py
Edit ROWS below (one dict per LLM step) and run again; analysts may also edit
the workbook directly in Excel.
"""

from pathlib import Path
from textwrap import dedent

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

HERE = Path(__file__).resolve().parent

COLUMNS = [
    "objective_id",
    "objective",
    "task_id",
    "task",
    "step",
    "prompt",
    "data",
    "depends_on",
    "show",
    "system",
    "model",
    "temperature",
    "max_tokens",
]

# Column widths in Excel characters; the prompt column gets the room.
WIDTHS = {
    "objective_id": 11,
    "objective": 24,
    "task_id": 8,
    "task": 30,
    "step": 6,
    "prompt": 100,
    "data": 42,
    "depends_on": 12,
    "show": 7,
    "system": 36,
    "model": 12,
    "temperature": 12,
    "max_tokens": 11,
}

# Ids are text: Excel must not turn task "2.10" into the number 2.1.
TEXT_COLUMNS = {"objective_id", "task_id", "depends_on"}


def p(text: str) -> str:
    """A prompt written as an indented triple-quoted string, tidied."""
    return dedent(text).strip()


DEMAND = {"objective_id": "1", "objective": "Energy demand today"}
SUPPLY = {"objective_id": "2", "objective": "Local renewable generation"}
GRID = {"objective_id": "3", "objective": "Grid congestion"}
HEAT = {"objective_id": "4", "objective": "Heat transition"}
EMISSIONS = {"objective_id": "5", "objective": "CO2 emissions compared with 1990"}
CONCLUSIONS = {
    "objective_id": "6",
    "objective": "Conclusions and recommendations",
    "depends_on": "1;2;3;4;5",
}

EDITOR = (
    "You are the editor of a regional energy report for Dutch local government. "
    "You improve clarity and length; you never change, add or round a figure."
)

ROWS = [
    # 1 Energy demand today ----------------------------------------------------
    {
        **DEMAND,
        "task_id": "1.1",
        "task": "Household electricity and natural gas",
        "step": 1,
        "prompt": p("""
            Below are the {{ context.year }} energy figures of the municipalities
            of {{ context.region }}. For each municipality compute:
            - household electricity use per dwelling in kWh (1 TJ = 277,778 kWh);
            - household natural gas use per dwelling in m³ (1 m³ = 31.65 MJ);
            - household electricity and gas use per inhabitant in GJ.
            Return one Markdown table sorted by gas use per dwelling (highest
            first), followed by the regional totals and the dwelling-weighted
            regional averages. State each conversion once, below the table.

            {{ data.municipalities }}
        """),
        "data": "municipalities",
    },
    {
        **DEMAND,
        "task_id": "1.1",
        "task": "Household electricity and natural gas",
        "step": 2,
        "prompt": p("""
            Write the section "{{ task }}" of the chapter "{{ objective }}" for
            {{ context.audience }}, in 250-350 words, from this analysis:

            {{ previous[-1] }}

            Say how much electricity and gas households in the region use in
            total, which municipalities stand out per dwelling and the likely
            reasons (share of detached houses in Deurne and Nuenen versus
            apartments in Eindhoven; district heating in parts of Eindhoven and
            Helmond). Keep the per-dwelling table. Use no figure that is not in
            the analysis.
        """),
        "show": True,
    },
    {
        **DEMAND,
        "task_id": "1.2",
        "task": "Businesses and services",
        "step": 1,
        "prompt": p("""
            The table lists the municipalities of {{ context.region }} where
            businesses and services (offices, shops, schools, hospitals, campuses)
            use more than 150 TJ of electricity a year. Compare their electricity
            and gas use (elektriciteit_bedrijven_tj, aardgas_bedrijven_tj) with
            household use in the same municipality. Where does business demand
            exceed household demand, and what does that mean for grid planning
            around business parks and high-tech campuses such as those in
            Eindhoven, Veldhoven and Son en Breugel? 150-250 words and one small
            table.
        """),
        "data": "municipalities[elektriciteit_bedrijven_tj > 150]",
    },
    {
        **DEMAND,
        "task_id": "1.3",
        "task": "Road transport and electric cars",
        "step": 1,
        "prompt": p("""
            For each municipality compute: the share of electric cars in the
            passenger car fleet (elektrische_autos / personenautos, in %), passenger
            cars per 1,000 inhabitants, and electric cars per public charging
            point. Add a regional total row. Return the table only, no commentary.

            {{ data.municipalities }}
        """),
        "data": "municipalities",
        "temperature": 0,
        "max_tokens": 400,
    },
    {
        **DEMAND,
        "task_id": "1.3",
        "task": "Road transport and electric cars",
        "step": 2,
        "prompt": p("""
            Write the section "{{ task }}" (200-300 words) from the table below and
            the regional mobility targets appended under this prompt.

            {{ previous[-1] }}

            Compare the regional share of electric cars with the national share of
            roughly 5 % at the end of {{ context.year }}. Estimate the extra
            electricity demand in {{ context.target_year }} if the target share is
            reached, assuming the car fleet stays the same size and one electric
            car uses about 2,500 kWh a year; give it in GWh and as a percentage of
            today's household electricity use (from the table). Say how many
            public charging points are still needed to reach the target.
        """),
        "data": 'targets[thema == "Mobiliteit"]',
    },
    # 2 Local renewable generation ---------------------------------------------
    {
        **SUPPLY,
        "task_id": "2.1",
        "task": "Rooftop solar: output and remaining potential",
        "step": 1,
        "prompt": p("""
            Compare, for each municipality, the current solar PV output (zon_pv_tj)
            with the technical potential of suitable roofs
            (zon_pv_potentieel_daken_tj). Compute the share of the potential in use
            and the remaining potential in TJ and in GWh, and the remaining
            potential per dwelling in kWh. Rank the municipalities by remaining
            potential and give the regional totals.

            {{ data.municipalities }}
        """),
        "data": "municipalities",
    },
    {
        **SUPPLY,
        "task_id": "2.1",
        "task": "Rooftop solar: output and remaining potential",
        "step": 2,
        "prompt": p("""
            Draft the section "{{ task }}" for {{ context.audience }} (250-350
            words) from this analysis:

            {{ previous[-1] }}

            Explain that the potential counts every suitable roof, so part of it
            will never be built; that large roofs of businesses are the fastest
            route; and that feed-in capacity on the grid can cap new installations
            (the grid chapter treats this). End with the two municipalities with
            the most untapped potential.
        """),
    },
    {
        **SUPPLY,
        "task_id": "2.1",
        "task": "Rooftop solar: output and remaining potential",
        "step": 3,
        "prompt": p("""
            Edit this draft for aldermen who are not energy specialists. Keep every
            figure and the table exactly as they are; where a figure is in TJ,
            make sure the GWh value is next to it; cut it to at most 300 words;
            replace jargon with plain words.

            {{ previous[-1] }}
        """),
        "show": True,
        "system": EDITOR,
        "temperature": 0,
    },
    {
        **SUPPLY,
        "task_id": "2.2",
        "task": "Wind energy",
        "step": 1,
        "prompt": p("""
            Only a few municipalities in {{ context.region }} generate wind power
            today; the first table lists them, the second gives the regional wind
            target. Compare current output with the {{ context.target_year }}
            target and estimate how many modern onshore turbines of 4 MW (about
            2,600 full-load hours a year) would close the gap. Name the practical
            constraints in this region: distance to homes, height restrictions
            around Eindhoven Airport, and nature areas such as De Groote Peel and
            the Strabrechtse Heide. 150-250 words.
        """),
        "data": 'municipalities[wind_tj > 0]; targets[indicator == "Wind op land"]',
    },
    {
        **SUPPLY,
        "task_id": "2.3",
        "task": "Gap to the 2030 electricity target",
        "step": 1,
        "prompt": p("""
            Add up the region's current renewable electricity (solar PV plus wind)
            from the municipal table appended below, in TJ and in TWh, and compare
            it with these {{ context.target_year }} targets:

            {{ data.targets }}

            How large is the gap? Show in a table how much of it rooftop PV would
            close if 25 %, 50 % or 75 % of the remaining rooftop potential
            (zon_pv_potentieel_daken_tj minus zon_pv_tj) were built by
            {{ context.target_year }}.
        """),
        "data": 'targets[thema == "Elektriciteit"]; municipalities',
    },
    {
        **SUPPLY,
        "task_id": "2.3",
        "task": "Gap to the 2030 electricity target",
        "step": 2,
        "prompt": p("""
            Summarise this analysis for the chapter in at most 150 words: the gap
            in TWh, what rooftop solar can realistically contribute and what must
            come from wind or solar fields. Keep the scenario table.

            {{ previous[-1] }}
        """),
        "show": True,
        "max_tokens": 300,
    },
    # 3 Grid congestion --------------------------------------------------------
    {
        **GRID,
        "task_id": "3.1",
        "task": "Offtake congestion per substation",
        "step": 1,
        "prompt": p("""
            These are the existing substations in {{ context.region }} with less
            than 5 MVA of offtake capacity left. For each station give the
            municipality, the remaining offtake capacity, the expected year of
            overload, the planned expansion (MVA and year) and the number of
            connection requests in the queue. Flag the stations where the
            expansion comes after 2026 or is not planned ("n.v.t." or "na 2035").
            Add the total queue for the region.

            {{ data.substations }}
        """),
        "data": (
            'substations[status == "Bestaand"'
            " and beschikbare_capaciteit_afname_mva < 5]"
        ),
    },
    {
        **GRID,
        "task_id": "3.1",
        "task": "Offtake congestion per substation",
        "step": 2,
        "prompt": p("""
            Write the section "{{ task }}" for {{ context.audience }}, 250-350
            words, from this analysis:

            {{ previous[-1] }}

            Explain in plain words what congestion on offtake ("transportschaarste")
            means for new housing, heat pumps, charging points and businesses that
            want a larger connection; which municipalities are hit hardest; and
            when the planned expansions by {{ context.grid_operator }} bring
            relief. Keep the station table.
        """),
        "show": True,
    },
    {
        **GRID,
        "task_id": "3.2",
        "task": "Feed-in capacity for solar and wind",
        "step": 1,
        "prompt": p("""
            The first table lists the existing Enexis substations with less than
            5 MVA of feed-in capacity left; the second gives the solar figures of the
            municipalities they serve. For each municipality, convert the remaining
            rooftop potential (zon_pv_potentieel_daken_tj minus zon_pv_tj) into an
            indicative peak in MW, assuming 900 full-load hours a year, and compare
            it with the feed-in capacity left at its stations. Where would new
            solar roofs have to wait for grid expansion?
        """),
        "data": (
            'substations[netbeheerder == "Enexis" and status == "Bestaand"'
            " and (beschikbare_capaciteit_invoeding_mva < 5)];"
            ' municipalities[gemeente in ["Eindhoven", "Helmond", "Best", "Deurne",'
            ' "Geldrop-Mierlo"]]'
        ),
    },
    {
        **GRID,
        "task_id": "3.2",
        "task": "Feed-in capacity for solar and wind",
        "step": 2,
        "prompt": p("""
            Turn this analysis into the section "{{ task }}" of at most 300 words.
            Mention the options that need no new cables: cable pooling of solar
            and wind, curtailing the top of the solar peak, and batteries at
            business parks.

            {{ previous[-1] }}
        """),
        "show": True,
    },
    {
        **GRID,
        "task_id": "3.3",
        "task": "Which stations overload, and when",
        "step": 1,
        "prompt": p("""
            List the Enexis substations in {{ context.region }} that have an
            expected year of overload, grouped into "overloaded already"
            ({{ context.year }} or earlier), "within three years" and "later".
            Relate each group to the planned expansions and say which
            municipalities face the longest wait. At most 200 words and one table.
        """),
        "data": (
            'substations[netbeheerder == "Enexis"'
            ' and not verwacht_jaar_overbelasting == "n.v.t."]'
        ),
        "max_tokens": 450,
    },
    {
        **GRID,
        "task_id": "3.4",
        "task": "The high-voltage grid (TenneT)",
        "step": 1,
        "prompt": p("""
            The regional distribution grid hangs on TenneT's 150 kV stations listed
            below. In at most 150 words: how much offtake and feed-in capacity do
            they have left, when are they expected to overload and when will the
            planned expansions be ready? Explain why expanding the Enexis stations
            in Eindhoven helps only once the 150 kV station behind them has room.

            {{ data.substations }}
        """),
        "data": 'substations[netbeheerder == "TenneT"]',
        "temperature": 0,
        "max_tokens": 300,
    },
    # 4 Heat transition --------------------------------------------------------
    {
        **HEAT,
        "task_id": "4.1",
        "task": "Natural gas in homes",
        "step": 1,
        "prompt": p("""
            For each municipality of {{ context.region }} compute household gas
            use per dwelling in m³ (1 m³ = 31.65 MJ), the number of dwellings that
            are already gas-free (woningen times woningen_aardgasvrij_pct), and the
            number that still has to switch by {{ context.target_year }} to meet
            the regional target share below. Give a table and the regional totals.

            {{ data.municipalities }}

            {{ data.targets }}
        """),
        "data": 'municipalities; targets[thema == "Warmte"]',
    },
    {
        **HEAT,
        "task_id": "4.1",
        "task": "Natural gas in homes",
        "step": 2,
        "prompt": p("""
            Draft the section "{{ task }}" (250-350 words) for
            {{ context.audience }} from this analysis:

            {{ previous[-1] }}

            How far is each municipality from the {{ context.target_year }} target,
            how many dwellings a year must switch from now on, and how does that
            compare with the pace so far? Keep the table.
        """),
        "show": True,
    },
    {
        **HEAT,
        "task_id": "4.2",
        "task": "Heat strategy per municipality",
        "step": 1,
        "prompt": p("""
            The first table lists the municipalities with fewer than 5 % gas-free
            dwellings or more than 900 TJ of household gas use; the second the
            existing substations. For each municipality estimate the density in
            dwellings per km² (woningen / oppervlakte_km²) and propose the most
            likely main heat strategy: district heating (worth studying above
            about 1,500 dwellings per km², or near a heat source), all-electric
            heat pumps, or hybrid heat pumps as an interim step. Point out where
            offtake congestion at the local substation makes an all-electric route
            hard before the expansion is ready. 200-300 words with a table.
        """),
        "data": (
            "municipalities[woningen_aardgasvrij_pct < 5"
            " or aardgas_huishoudens_tj > 900];"
            ' substations[status == "Bestaand"]'
        ),
    },
    {
        **HEAT,
        "task_id": "4.3",
        "task": "Heat pumps and the winter peak",
        "step": 1,
        "prompt": p("""
            Estimate the extra winter peak on the electricity grid if the
            dwellings that must go gas-free by {{ context.target_year }} (see the
            targets) switch to heat pumps. Assume 1.5 kW per all-electric dwelling
            and 0.8 kW per hybrid dwelling at the regional peak (after diversity),
            and a 60/40 split between hybrid and all-electric. Give the result per
            municipality in MW, and the regional total, next to the offtake
            capacity left at the region's substations (sum of
            beschikbare_capaciteit_afname_mva).
        """),
        "data": (
            'municipalities; targets[indicator == "Aardgasvrije woningen"];'
            ' substations[status == "Bestaand"]'
        ),
    },
    {
        **HEAT,
        "task_id": "4.3",
        "task": "Heat pumps and the winter peak",
        "step": 2,
        "prompt": p("""
            Summarise this estimate in at most 120 words for the chapter, with the
            regional total in MW and the one comparison that matters most for
            decision makers.

            {{ previous[-1] }}
        """),
        "show": True,
        "max_tokens": 300,
    },
    # 5 CO2 emissions compared with 1990 ---------------------------------------
    {
        **EMISSIONS,
        "task_id": "5.1",
        "task": "Emissions per municipality",
        "step": 1,
        "prompt": p("""
            For each municipality compute the change in CO2 emissions from 1990
            to {{ context.year }} (co2_1990_kton, co2_2023_kton) in kton and in %,
            and the {{ context.year }} emissions per inhabitant in tonnes. A
            straight line from 1990 to the 55 % reduction of 2030 would have
            reached about 45 % in {{ context.year }}: mark each municipality as
            ahead of or behind that line. Add the regional total row.

            {{ data.municipalities }}
        """),
        "data": "municipalities",
        "temperature": 0,
    },
    {
        **EMISSIONS,
        "task_id": "5.1",
        "task": "Emissions per municipality",
        "step": 2,
        "prompt": p("""
            Write the section "{{ task }}" (200-300 words) from this analysis,
            keeping its table:

            {{ previous[-1] }}

            Explain which municipalities lag furthest behind and why that can be
            (growth of population and employment, a large rural area with old
            detached houses). Avoid suggesting that per-inhabitant figures compare
            fairly when a municipality hosts large employers.
        """),
        "show": True,
    },
    {
        **EMISSIONS,
        "task_id": "5.2",
        "task": "Emissions by sector",
        "step": 1,
        "prompt": p("""
            Compare the region's CO2 emissions per sector in 1990 and
            {{ context.year }}: change in kton and in %, and each sector's share of
            the total in both years. Table only.

            {{ data.emissions }}
        """),
        "data": "emissions[jaar in [1990, 2023]]",
        "temperature": 0,
        "max_tokens": 400,
    },
    {
        **EMISSIONS,
        "task_id": "5.2",
        "task": "Emissions by sector",
        "step": 2,
        "prompt": p("""
            Write the section "{{ task }}" in 150-250 words from this table. Which
            sectors drove the reduction, and why did traffic and transport barely
            move? Keep the table.

            {{ previous[-1] }}
        """),
    },
    {
        **EMISSIONS,
        "task_id": "5.3",
        "task": "Trajectory to 2030",
        "step": 1,
        "prompt": p("""
            Using the 2015-{{ context.year }} trend of each sector in the first
            table, extrapolate emissions in a straight line to
            {{ context.target_year }} and compare the regional total with the
            reduction target in the second table (relative to 1990). How large is
            the remaining gap in kton, and which sectors must contribute most to
            close it? Be explicit that a linear extrapolation is a rough guide
            (2020 was a pandemic year). 200-250 words with a table.
        """),
        "data": 'emissions; targets[thema == "Emissies"]',
    },
    # 6 Conclusions and recommendations ----------------------------------------
    {
        **CONCLUSIONS,
        "task_id": "6.1",
        "task": "Key findings",
        "step": 1,
        "prompt": p("""
            Below are the five chapters of the report "{{ title }}". List the 8 to
            10 most important findings for {{ context.audience }}. Give each as
            one sentence with the figure that supports it and the number of the
            chapter it comes from. Do not add figures of your own.

            ## 1 Energy demand today
            {{ chapters['1'] }}

            ## 2 Local renewable generation
            {{ chapters['2'] }}

            ## 3 Grid congestion
            {{ chapters['3'] }}

            ## 4 Heat transition
            {{ chapters['4'] }}

            ## 5 CO2 emissions compared with 1990
            {{ chapters['5'] }}
        """),
        "max_tokens": 900,
    },
    {
        **CONCLUSIONS,
        "task_id": "6.1",
        "task": "Key findings",
        "step": 2,
        "prompt": p("""
            Write the executive summary of "{{ title }}" for
            {{ context.audience }} in 300-400 words, based only on these findings:

            {{ previous[-1] }}

            Open with the single most urgent message for {{ context.region }}:
            grid capacity, not ambition, now limits the pace of the transition.
            Then cover demand, renewable generation, heat and emissions, each
            with its key figure.
        """),
        "show": True,
        "model": "gpt-4o",
    },
    {
        **CONCLUSIONS,
        "task_id": "6.2",
        "task": "Recommendations",
        "step": 1,
        "prompt": p("""
            From the chapters on renewable generation, grid congestion and heat
            below, collect every concrete measure that would help
            {{ context.region }} reach its {{ context.target_year }} targets.
            For each, note the figure in the report that motivates it.

            {{ chapters['2'] }}

            {{ chapters['3'] }}

            {{ chapters['4'] }}
        """),
    },
    {
        **CONCLUSIONS,
        "task_id": "6.2",
        "task": "Recommendations",
        "step": 2,
        "prompt": p("""
            Prioritise these measures into at most eight recommendations, as a
            table with the columns: recommendation, who acts (municipality,
            province, {{ context.grid_operator }}, TenneT, housing associations,
            businesses), cost (low, medium, high), when (2025-2026 or
            2027-{{ context.target_year }}), and the motivating figure. Put
            measures that relieve grid congestion first.

            {{ previous[-1] }}
        """),
    },
    {
        **CONCLUSIONS,
        "task_id": "6.2",
        "task": "Recommendations",
        "step": 3,
        "prompt": p("""
            Add a short introduction (at most 80 words) above this table of
            recommendations and check that every row names one actor and one
            figure. Return the introduction and the table.

            {{ previous[-1] }}
        """),
        "show": True,
        "system": EDITOR,
        "temperature": 0,
    },
    {
        **CONCLUSIONS,
        "task_id": "6.3",
        "task": "In brief, for the council letter",
        "step": 1,
        "prompt": p("""
            In at most 120 words, plain language and no table, tell the municipal
            councils of {{ context.region }} where the region stands on grid
            capacity and on CO2 reduction, using one figure from each chapter:

            {{ chapters['3'] }}

            {{ chapters['5'] }}
        """),
        "temperature": 0,
        "max_tokens": 300,
    },
]


def main() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "prompts"
    sheet.append(COLUMNS)
    for row in ROWS:
        sheet.append([row.get(column) for column in COLUMNS])

    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(vertical="center")

    for index, column in enumerate(COLUMNS, start=1):
        letter = sheet.cell(row=1, column=index).column_letter
        sheet.column_dimensions[letter].width = WIDTHS[column]
        for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
            cell.alignment = Alignment(vertical="top", wrap_text=True)
            if column in TEXT_COLUMNS:
                cell.number_format = "@"

    sheet.freeze_panes = "F2"
    sheet.auto_filter.ref = sheet.dimensions

    path = HERE / "prompts.xlsx"
    workbook.save(path)
    print(f"wrote {path} ({len(ROWS)} rows)")


if __name__ == "__main__":
    main()
